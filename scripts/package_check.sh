#!/usr/bin/env bash
# Packaging a user can pass on: an sdist that builds, and a wheel that installs
# into a second environment with the same torch and runs there.
#   1. python -m build --sdist            -> dist/qlam-<version>.tar.gz
#   2. pip wheel from that sdist          -> dist/qlam-<version>-<tag>.whl (so the sdist builds)
#   3. a second, empty environment that sees only torch (and its needs) of qlam's
#      environment, the wheel installed into it, then qlam's op, qlam.info and the
#      build-info and parity tests run there, from outside the checkout.
# CPU-only wheel by default (QLAM_WITH_CUDA=OFF) to keep CI short; set
# QLAM_WITH_CUDA=AUTO to package the CUDA kernels as well.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
env_dir="${QLAM_ENV:-$HOME/.cache/qlam/venv}"
work="${QLAM_PACKAGE_DIR:-/tmp/qlam-package}"
# shellcheck disable=SC1091
source "$env_dir/bin/activate"
export QLAM_WITH_CUDA="${QLAM_WITH_CUDA:-OFF}"
start=$SECONDS
rm -rf "$work" && mkdir -p "$work/dist"

echo "package: sdist"
python -m build --sdist --no-isolation --outdir "$work/dist" . > "$work/sdist.log" 2>&1 ||
  { tail -20 "$work/sdist.log"; exit 1; }
sdist="$(ls "$work"/dist/qlam-*.tar.gz)"
echo "package: wheel from $(basename "$sdist") (QLAM_WITH_CUDA=$QLAM_WITH_CUDA)"
python -m pip wheel -q --no-build-isolation --no-deps -w "$work/dist" "$sdist" > "$work/wheel.log" 2>&1 ||
  { tail -20 "$work/wheel.log"; exit 1; }
wheel="$(ls "$work"/dist/qlam-*.whl)"

echo "package: installing $(basename "$wheel") into a second environment"
python -m venv --without-pip "$work/env2"
site2="$("$work/env2/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
site1="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
# The second environment sees the first one's packages (torch) as a plain path entry,
# so the first one's editable qlam (an import hook set up by a .pth file there) stays out.
echo "$site1" > "$site2/qlam-package-check-torch.pth"
python -m pip install -q --no-deps --no-compile --target "$site2" "$wheel"

cd "$work"  # outside the checkout: nothing can come from python/ there
"$work/env2/bin/python" - <<'EOF'
import qlam, torch
where = qlam.__file__
assert "/env2/" in where, f"qlam was imported from {where}, not from the installed wheel"
features, final = qlam.ops.scan(torch.rand(2, 5, 2, 1, 3, 3))
assert features.shape == (2, 5, 2, 9) and final.shape == (2, 2, 8)
print(f"package: the wheel's qlam runs ({where})")
EOF
"$work/env2/bin/python" -m qlam.info
"$work/env2/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$work" -c /dev/null \
  "$root/tests/test_build_info.py" "$root/tests/test_scan_parity.py" -k "not opcheck"
echo "package: sdist, wheel and the second environment passed in $((SECONDS - start)) s"
