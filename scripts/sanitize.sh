#!/usr/bin/env bash
# Builds qlam's C++ with AddressSanitizer + UndefinedBehaviorSanitizer (CPU only)
# and runs the scan tests against that build. Any sanitizer report fails the job.
#
#   bash scripts/sanitize.sh                 # the default test files
#   bash scripts/sanitize.sh -k fuzz         # extra pytest arguments pass through
#
# The build goes to its own build directory (build/asan) and its own install
# location ($QLAM_SANITIZE_DIR, default /tmp/qlam-sanitize); the environment's
# editable install of qlam is neither rebuilt nor replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir="${QLAM_ENV:-$HOME/.cache/qlam/venv}"
out="${QLAM_SANITIZE_DIR:-/tmp/qlam-sanitize}"
# Not scripts/env.sh: that would rebuild the shared editable install.
# shellcheck disable=SC1091
source "$env_dir/bin/activate"
start=$SECONDS

echo "qlam-sanitize: building into build/asan, installing into $out/site"
rm -rf "$out/site"
mkdir -p "$out"
python -m pip install -q --no-build-isolation --no-deps --target "$out/site" \
  -C build-dir=build/asan -C cmake.define.QLAM_SANITIZE=ON -C cmake.define.QLAM_WITH_CUDA=OFF .
build_s=$((SECONDS - start))

# The editable install puts an import hook ahead of sys.path, so PYTHONPATH
# alone would still load the shared build: the runner drops that hook and
# checks that the sanitized extension is the one loaded.
cat > "$out/run_pytest.py" <<'EOF'
import os
import sys

sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
import pytest  # noqa: E402
import qlam._extension  # noqa: E402

site = os.environ["QLAM_SANITIZE_SITE"]
loaded = qlam._extension._C.__file__ if qlam._extension.AVAILABLE else str(qlam._extension.IMPORT_ERROR)
if not loaded.startswith(site):
    sys.exit(f"qlam-sanitize: loaded {loaded}, not the sanitized build in {site}")
print(f"qlam-sanitize: testing {loaded}")
sys.exit(pytest.main(sys.argv[1:]))
EOF

tests=(tests/test_scan_parity.py tests/test_scan_errors.py tests/test_scan_gradcheck.py
       tests/test_warp_emulation.py tests/test_warp_register_emulation.py tests/test_warp_register_race.py
       tests/test_readout.py tests/test_gated_gelu.py
       tests/test_fuzz_scan.py tests/test_fuzz_layer.py)
[ $# -gt 0 ] && tests=("$@")
log="$out/pytest.log"
reports="$out/reports"
rm -rf "$reports" && mkdir -p "$reports"
# libasan must come before everything else (python itself is not instrumented),
# and libstdc++ too, or ASan cannot intercept C++ exceptions (torch's errors).
# ASan reports go to files; UBSan (its own runtime next to ASan's) writes to
# fd 2 whatever log_path says, so pytest captures only Python's sys.stderr
# (--capture=sys) and the report reaches the log: a process that dies inside a
# test would take fd-captured output with it. Leaks are not checked: CPython
# keeps objects alive until exit by design.
set +e
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:log_path=$reports/asan" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87" \
  QLAM_SANITIZE_SITE="$out/site" PYTHONPATH="$out/site${PYTHONPATH:+:$PYTHONPATH}" \
  python "$out/run_pytest.py" -p no:cacheprovider --capture=sys -q "${tests[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
test_s=$((SECONDS - start - build_s))
echo "qlam-sanitize: build ${build_s} s, tests ${test_s} s, total $((SECONDS - start)) s"
# A report from a child process, or from a test that caught the failure, still fails the job.
if [ -n "$(ls -A "$reports")" ]; then
  head -n 60 "$reports"/* >&2
  echo "qlam-sanitize: FAILED: sanitizer reports in $reports" >&2
  exit 1
fi
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: UndefinedBehaviorSanitizer" "$log"; then
  echo "qlam-sanitize: FAILED: sanitizer report in $log" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "qlam-sanitize: FAILED: pytest exited with $rc (86: AddressSanitizer, 87: UBSan); log in $log" >&2
  exit "$rc"
fi
echo "qlam-sanitize: OK, no sanitizer reports"
