#!/usr/bin/env bash
# Distributed training with torchrun: NPROC processes on each of NNODES machines.
#
#   tools/dist_train.sh CONFIG NPROC [tools/train.py options...]
#
# NPROC is the processes per machine: one per GPU; on a machine without GPUs (or with
# CUDA_VISIBLE_DEVICES=-1) NPROC CPU processes. The backend follows: NCCL on GPUs, gloo
# on CPUs (tools/train.py chooses; SyncBN configs synchronise on CPUs too).
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
# PYTHON (python). Several machines: run it on each, with the same MASTER_ADDR/PORT
# (the address of the NODE_RANK=0 machine) and NODE_RANK=0..NNODES-1.
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [tools/train.py options...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
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
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
