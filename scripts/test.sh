#!/usr/bin/env bash
# Everything the tests need on a fresh machine: environment, build, then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k scan`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh || exit 1
python -m qlam.info
python -m pytest "$@"
