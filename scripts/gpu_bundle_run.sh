#!/usr/bin/env bash
# Copied into .gpu_bundle/run.sh by scripts/gpu_bundle.sh: runs gpu_check.sh on a GPU machine with no
# package registry, with the bundle's wheels (installed offline, only where the image lacks them) and
# its MNIST; logs in $OUT/gpu_check when OUT is set (the device tool's output folder), else runs/gpu_check.
# Run it as .gpu_bundle/run.sh from anywhere: it works in the clone above the bundle.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.." || exit 2
nvidia-smi -L; python3 --version
logs="${OUT:-$(pwd)/runs}/gpu_check"
mkdir -p "$logs"
# by name: what the image already has stays as it is; only what it lacks comes from the bundle
python3 -m pip install -q --no-index --find-links "$here/wheels" expecttest hypothesis pytest-timeout > "$logs/pip.log" 2>&1 ||
  { echo "run.sh: installing the bundled wheels failed (see $logs/pip.log); going on without them"; tail -3 "$logs/pip.log"; }
# gpu_check uses `python` when it exists: make it the python3 that has torch
pybin="$(python3 -c 'import sys, os; print(os.path.dirname(sys.executable))')"
export PATH="$pybin:$PATH"
export QLAM_DATA="$here" QLAM_NO_DOWNLOAD=1 QLAM_GPU_LOG_DIR="$logs"
bash scripts/gpu_check.sh
rc=$?
echo "gpu_check rc=$rc"
exit "$rc"
