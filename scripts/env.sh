#!/usr/bin/env bash
# Creates (once) and activates qlam's environment, then builds qlam into it.
# Source it: `source scripts/env.sh`. The environment lives outside the clone,
# in $QLAM_ENV (default ~/.cache/qlam/venv), so later runs and CI reuse it.
#   QLAM_REQUIREMENTS  the requirements file (default scripts/requirements.txt,
#                      the pinned development torch; scripts/compat.sh passes others)
#   QLAM_UPGRADE=1     re-resolve the requirements on every run (the "newest torch"
#                      environment), not only when the file changed
# Each environment builds in its own folder, build/<environment name>/, so
# environments with different torches never share (or overwrite) objects.
qlam_env_setup() {
  local root env requirements stamp want name
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  env="${QLAM_ENV:-$HOME/.cache/qlam/venv}"
  requirements="${QLAM_REQUIREMENTS:-$root/scripts/requirements.txt}"
  if [ ! -x "$env/bin/python" ]; then
    echo "qlam: creating the environment in $env (the first run downloads torch, a few GB)"
    mkdir -p "$(dirname "$env")" && python3 -m venv "$env" &&
      "$env/bin/python" -m pip install -q --upgrade pip || return 1
  fi
  # Reinstall the requirements only when their lists changed (or always, with QLAM_UPGRADE=1).
  stamp="$env/.qlam-requirements.sha"
  want="$(cat "$requirements" "$root/scripts/requirements-common.txt" | sha256sum | cut -d' ' -f1)"
  if [ "${QLAM_UPGRADE:-0}" = 1 ]; then
    echo "qlam: updating $env to the newest versions of $(basename "$requirements")"
    "$env/bin/python" -m pip install -q --upgrade -r "$requirements" || return 1
    echo "$want" > "$stamp"
  elif [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$env/bin/python" -m pip install -q -r "$requirements" || return 1
    echo "$want" > "$stamp"
  fi
  # shellcheck disable=SC1091
  source "$env/bin/activate" || return 1
  # Build the extension against this torch (incremental: the build folder keeps the objects).
  name="$(basename "$env")"
  echo "qlam: building the extension against torch $(python -c 'import torch; print(torch.__version__)') in build/$name (with the CUDA kernels when nvcc is present)"
  (cd "$root" && python -m pip install -q --no-build-isolation --no-deps \
     -C "build-dir=build/$name/{wheel_tag}" -e .) || {
    echo "qlam: the build failed; see the messages above" >&2
    return 1
  }
}
qlam_env_setup
