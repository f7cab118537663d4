#!/usr/bin/env bash
# The main job on a fresh machine: environment, build, then train QLAM on
# sequential MNIST with the config that fits the machine: configs/smnist/qlam.yaml
# (the full one) with a CUDA GPU, configs/smnist/cpu.yaml (minutes) without one;
# the first line printed after the build says which and why (qlam.train.main_job).
#   bash scripts/train.sh                                   # the config that fits
#   bash scripts/train.sh train.epochs=2                    # the same, with overrides (dotted keys)
#   bash scripts/train.sh configs/smnist/qlam.yaml [KEY=VALUE ...]   # a config given always wins
#   bash scripts/train.sh --resume                          # continue the interrupted run
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
source scripts/env.sh || exit 1
if ! python -c "import qlam.train.main_job" 2>/dev/null; then
  echo "qlam: the training package (qlam.train) is not part of this checkout yet" >&2
  exit 1
fi
QLAM_CALLER_DIR="$caller" exec python -m qlam.train.main_job "$@"
