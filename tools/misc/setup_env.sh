#!/usr/bin/env bash
# Create .venv with the pinned OpenMMLab stack; `make setup` runs this.
#
# A second run takes seconds: the environment is stamped with a hash of the requirement
# files and of this script, and mmcv's compiled wheel is cached outside the checkout
# (MMCV_WHEEL_CACHE, default ~/.cache/mobilenet_tasks/wheels), so a fresh clone on the
# same machine reuses it instead of compiling again.
#
# Work-arounds for the pinned stack (see ../shared/UPSTREAM.md):
# - mmcv 2.1.0 has no wheel for torch 2.14: its ops are built from the source release
#   with MMCV_WITH_OPS=1 and --no-build-isolation (its setup.py imports torch), in a
#   build environment with setuptools<70 (it imports pkg_resources), and with -std=c++17
#   raised to -std=c++20 (torch 2.14's headers need C++20).
# - mmseg 1.2.2 imports ftfy and regex without declaring them: in requirements/runtime.txt.
#
# Every package resolves to the version the test suite last passed with:
# requirements/constraints.txt pins each one (the requirement files name what is needed,
# the constraints which version), so a fresh machine next month installs what was
# tested. Upgrading is one deliberate edit of that file (regenerate it with
# `.venv/bin/python -m pip freeze --exclude-editable`, then run `make test`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
CACHE=${MMCV_WHEEL_CACHE:-$HOME/.cache/mobilenet_tasks/wheels}
MMCV_VERSION=2.1.0

stamp_hash=$(cat requirements/*.txt setup.py tools/misc/setup_env.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.mobilenet_tasks-setup-$stamp_hash"
if [ -f "$STAMP" ]; then
  echo "setup: $VENV is up to date (delete it, or run 'make clean-env', to rebuild)."
  exit 0
fi

log() { echo "setup: $*"; }
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# This machine's pip config names local indexes that may not exist; hide those warnings.
quiet_pip() { "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }
CONSTRAINTS=(-c requirements/constraints.txt)
quiet_pip install -q "${CONSTRAINTS[@]}" --upgrade pip

log "installing PyTorch (requirements/torch.txt; about a minute the first time)"
quiet_pip install -q "${CONSTRAINTS[@]}" -r requirements/torch.txt

# The cached wheel is only good for the torch it was compiled against: key it by version.
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
CACHE="$CACHE/torch-$TORCH_VERSION"
mmcv_wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$mmcv_wheel" ]; then
  log "building mmcv $MMCV_VERSION with its compiled ops from source."
  log "This takes 6 to 18 minutes on 2 cores; it is done once and cached in $CACHE."
  # The build needs an older setuptools than torch declares (build.txt says why); the
  # runtime install below puts the declared one back. The resolver's conflict report for
  # this intermediate state is expected, so it is not printed.
  quiet_pip install -q --no-warn-conflicts -r requirements/build.txt
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  quiet_pip download -q --no-deps --no-binary mmcv --no-build-isolation \
    "mmcv==$MMCV_VERSION" -d "$build"
  tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
  src="$build/mmcv-$MMCV_VERSION"
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  mkdir -p "$CACHE"
  start=$(date +%s)
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} FORCE_CUDA=0 \
    "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$CACHE" . ) \
    > "$build/build.log" 2>&1 || { tail -n 40 "$build/build.log"; log "mmcv build failed"; exit 1; }
  log "mmcv built in $(( $(date +%s) - start )) s"
  mmcv_wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n 1)
fi

log "installing the OpenMMLab stack and the project"
quiet_pip install -q "${CONSTRAINTS[@]}" "$mmcv_wheel" -r requirements/mminstall.txt \
  -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
quiet_pip install -q --no-deps --no-build-isolation --use-pep517 -e .
"$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain.models, mobilenet_tasks; \
print('setup: ok: mmcv', mmcv.__version__, 'with ops, mmdet', mmdet.__version__, \
'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__)"
rm -f "$VENV"/.mobilenet_tasks-setup-*
touch "$STAMP"
