#!/usr/bin/env bash
# Creates the environment of benchmarks/simulators.py: the quantum simulators
# (pyproject's `bench` extra) in their own venv, so the main one is not altered.
#
#     bash benchmarks/bench_env.sh            # then: ~/.cache/qlam/bench-venv/bin/python benchmarks/simulators.py
#
# The bench venv sees the main venv's site-packages through a .pth file (torch
# and qlam come from there, nothing is downloaded twice), and pip installs under
# constraints pinning every package of the main venv, so it never needs to
# replace one (it could not anyway: pip does not uninstall outside its prefix).
set -euo pipefail
cd "$(dirname "$0")/.."

MAIN="${QLAM_ENV:-$HOME/.cache/qlam/venv}"
BENCH="${QLAM_BENCH_ENV:-$HOME/.cache/qlam/bench-venv}"
[ -x "$MAIN/bin/python" ] || { echo "no main environment at $MAIN: run bash scripts/test.sh first" >&2; exit 1; }

main_site=$("$MAIN/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
base_python=$("$MAIN/bin/python" -c "import sys; print(sys._base_executable)")
[ -x "$BENCH/bin/python" ] || "$base_python" -m venv "$BENCH"
bench_site=$("$BENCH/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# addsitedir (not a plain path line) so the main venv's own .pth files run too: qlam is an editable install
echo "import site; site.addsitedir('$main_site')" > "$bench_site/qlam_main_venv.pth"

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$MAIN/bin/python" -m pip freeze --exclude-editable | grep -v '^#' > "$constraints"
packages=$(sed -n 's/^bench = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
# One at a time: a simulator that cannot be installed does not stop the others
# (simulators.py records the import error of a missing one). torchquantum goes
# first: its latest release (0.1.8) pins qiskit<1.0, qiskit-aer (0.18) needs
# qiskit>=1.1, so qiskit-aer must come after it and replace that old qiskit
# (whose qiskit-terra files would clash with the new qiskit's).
ordered="$(echo " $packages " | grep -o ' torchquantum ' || true) $(echo " $packages " | sed 's/ torchquantum / /')"
for package in $ordered; do
    if [ "$package" = qiskit-aer ]; then
        "$BENCH/bin/python" -m pip uninstall -y -q qiskit qiskit-terra 2>/dev/null || true
    fi
    "$BENCH/bin/python" -m pip install -c "$constraints" "$package" || echo "FAILED to install $package" >&2
done
"$BENCH/bin/python" -c "import torch, qlam.ops; print('bench env ready: torch', torch.__version__)"
