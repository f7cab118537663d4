#!/usr/bin/env bash
# Prepares what a GPU machine with no package registry and no datasets needs beside a clone to run
# scripts/gpu_check.sh, in one folder to carry there (.gpu_bundle/, ignored by git, ~15 MiB):
#   wheels/   the test-only packages such an image may lack (expecttest, hypothesis, pytest-timeout,
#             with their dependencies), for its Python (QLAM_BUNDLE_PYTHON, default 3.12)
#   mnist/    MNIST's four .gz files, from the first data root that has them ($QLAM_DATA,
#             ../shared/data/mnist, ...), for gpu_check's short sMNIST training
#   run.sh    scripts/gpu_bundle_run.sh: installs the wheels offline, points QLAM_DATA at the bundle and runs gpu_check.sh,
#             with its logs under $OUT/gpu_check when OUT is set (the device tool's output folder)
# Usage: bash scripts/gpu_bundle.sh            (here, with pip reaching PyPI)
#        bash .gpu_bundle/run.sh               (there; QLAM_GPU_STEPS and QLAM_GPU_BUDGET_S pass through)
set -euo pipefail
cd "$(dirname "$0")/.." || exit 2
root="$(pwd)"
bundle="$root/.gpu_bundle"
python_version="${QLAM_BUNDLE_PYTHON:-3.12}"
py="$(command -v python3)"
[ -x "${QLAM_ENV:-$HOME/.cache/qlam/venv}/bin/python" ] && py="${QLAM_ENV:-$HOME/.cache/qlam/venv}/bin/python"

rm -rf "$bundle.tmp" && mkdir -p "$bundle.tmp/wheels" "$bundle.tmp/mnist"
echo "gpu_bundle: wheels for Python $python_version (manylinux x86_64)"
"$py" -m pip download -q --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$bundle.tmp/wheels" \
  expecttest hypothesis pytest-timeout

files="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
found=""
for dir in ${QLAM_DATA:+"$QLAM_DATA/mnist" "$QLAM_DATA"} "$root/../shared/data/mnist" /usr/share/datasets/mnist; do
  ok=1
  for f in $files; do [ -f "$dir/$f.gz" ] || ok=0; done
  if [ "$ok" = 1 ]; then found="$dir"; break; fi
done
if [ -z "$found" ]; then
  echo "gpu_bundle: no MNIST .gz files found (looked in \$QLAM_DATA, ../shared/data/mnist, /usr/share/datasets/mnist);" \
       "gpu_check's training step will fail without them" >&2
  exit 1
fi
for f in $files; do cp "$found/$f.gz" "$bundle.tmp/mnist/"; done
echo "gpu_bundle: MNIST from $found"

cp scripts/gpu_bundle_run.sh "$bundle.tmp/run.sh"
chmod +x "$bundle.tmp/run.sh"
rm -rf "$bundle" && mv "$bundle.tmp" "$bundle"
echo "gpu_bundle: $(du -sh "$bundle" | cut -f1) in $bundle: carry it, then run 'bash .gpu_bundle/run.sh' in the clone's root"
