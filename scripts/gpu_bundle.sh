#!/usr/bin/env bash
# Prepares what a GPU machine with no package registry and no datasets needs beside a clone to run
# scripts/gpu_check.sh, in one folder to carry there (.gpu_bundle/, ignored by git, ~14 MiB):
#   wheels/   the test-only packages such an image may lack (expecttest, hypothesis, pytest-timeout,
#             with their dependencies), for its Python (QLAM_BUNDLE_PYTHON, default 3.12)
#   mnist/    MNIST's four .gz files, from the first of qlam's data roots that has them ($QLAM_DATA,
#             ../shared/data, ...), for gpu_check's short sMNIST training
#   run.sh    scripts/gpu_bundle_run.sh: installs the wheels offline, points QLAM_DATA at the bundle and runs gpu_check.sh,
#             with its logs under $OUT/gpu_check when OUT is set (the device tool's output folder)
# Usage: bash scripts/gpu_bundle.sh            (here, with pip reaching PyPI)
#        bash .gpu_bundle/run.sh               (there; QLAM_GPU_STEPS and QLAM_GPU_BUDGET_S pass through)
set -euo pipefail
cd "$(dirname "$0")/.." || exit 2
root="$(pwd)"
bundle="$root/.gpu_bundle"
python_version="${QLAM_BUNDLE_PYTHON:-3.12}"
py="${QLAM_ENV:-$HOME/.cache/qlam/venv}/bin/python"  # qlam's environment: its pip, and its data roots below
if [ ! -x "$py" ]; then
  echo "gpu_bundle: no qlam environment at ${py%/bin/python}; run 'source scripts/env.sh' first" >&2
  exit 2
fi

rm -rf "$bundle.tmp" && mkdir -p "$bundle.tmp/wheels" "$bundle.tmp/mnist"
echo "gpu_bundle: wheels for Python $python_version (manylinux x86_64)"
"$py" -m pip download -q --only-binary=:all: --python-version "$python_version" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$bundle.tmp/wheels" \
  expecttest hypothesis pytest-timeout

# where qlam's own loader looks (qlam.data: $QLAM_DATA, ../shared/data, /usr/share/datasets, ...)
found="$("$py" - <<'EOF'
from qlam.data.roots import candidate_roots
from qlam.data.sources import GZ_FOLDERS, IDX_FILES

for root in candidate_roots(None):
    for sub in GZ_FOLDERS["MNIST"]:
        if all((root / sub / f"{name}.gz").is_file() for name in IDX_FILES):
            print(root / sub)
            raise SystemExit
EOF
)"
if [ -z "$found" ]; then
  echo "gpu_bundle: no MNIST .gz files in qlam's data roots (\$QLAM_DATA, ../shared/data, /usr/share/datasets);" \
       "gpu_check's training step will fail without them" >&2
  exit 1
fi
cp "$found"/*-ubyte.gz "$bundle.tmp/mnist/"
echo "gpu_bundle: MNIST from $found"

cp scripts/gpu_bundle_run.sh "$bundle.tmp/run.sh"
chmod +x "$bundle.tmp/run.sh"
rm -rf "$bundle" && mv "$bundle.tmp" "$bundle"
echo "gpu_bundle: $(du -sh "$bundle" | cut -f1) in $bundle: carry it, then run 'bash .gpu_bundle/run.sh' in the clone's root"
