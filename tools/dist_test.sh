#!/usr/bin/env bash
# Distributed testing with torchrun: NPROC processes on each of NNODES machines; the
# predictions of all processes are gathered and the metrics computed once, over the
# whole test set.
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]
#
# NPROC is the processes per machine: one per GPU; on a machine without GPUs (or with
# CUDA_VISIBLE_DEVICES=-1) NPROC CPU processes (NCCL on GPUs, gloo on CPUs).
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
# PYTHON (python).
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [tools/test.py options...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
