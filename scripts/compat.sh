#!/usr/bin/env bash
# The torch compatibility matrix: builds qlam against the newest torch on the
# package index and against the oldest torch the README claims, each in its own
# cached environment outside the clone (~/.cache/qlam/compat-<name>), and runs
# the fast subset of the tests there (parity with the reference, gradcheck,
# opcheck, the layer, a tiny training run). The full suite runs on the pinned
# development torch (scripts/test.sh). CI runs both (.ci/run).
#
#   bash scripts/compat.sh            # newest and oldest
#   bash scripts/compat.sh newest     # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
FAST_SUBSET=(
  tests/test_scan_parity.py
  tests/test_scan_gradcheck.py
  tests/test_layer.py
  tests/test_build_info.py
  "tests/test_train.py::test_cli_train_and_eval"
)
[ "$#" -eq 0 ] && set -- newest oldest
for which in "$@"; do
  requirements="$root/scripts/requirements-$which.txt"
  if [ ! -f "$requirements" ]; then
    echo "compat: no $requirements; known: newest, oldest" >&2
    exit 2
  fi
  start=$SECONDS
  echo "=== compat: $which torch ($(grep -m1 '^torch' "$requirements"))"
  (
    export QLAM_ENV="$HOME/.cache/qlam/compat-$which" QLAM_REQUIREMENTS="$requirements"
    # the newest torch is looked up again on every run; the oldest is pinned
    [ "$which" = newest ] && export QLAM_UPGRADE=1
    # shellcheck disable=SC1091
    source scripts/env.sh || exit 1
    python -m qlam.info
    python -m pytest -q -p no:cacheprovider "${FAST_SUBSET[@]}"
  )
  echo "=== compat: $which torch passed in $((SECONDS - start)) s"
done
