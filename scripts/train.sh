#!/usr/bin/env bash
# The main job on a fresh machine: environment, build, then train QLAM on
# sequential MNIST with the default config. Extra arguments are config
# overrides (dotted keys), e.g. `bash scripts/train.sh train.epochs=2`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh || exit 1
if ! python -c "import qlam.train" 2>/dev/null; then
  echo "qlam: the training package (qlam.train) is not part of this checkout yet" >&2
  exit 1
fi
python -m qlam.train configs/smnist/qlam.yaml "$@"
