#!/usr/bin/env bash
# Creates (once) and activates qlam's environment, then builds qlam into it.
# Source it: `source scripts/env.sh`. The environment lives outside the clone,
# in $QLAM_ENV (default ~/.cache/qlam/venv), so later runs and CI reuse it.
qlam_env_setup() {
  local root env requirements stamp want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  env="${QLAM_ENV:-$HOME/.cache/qlam/venv}"
  requirements="$root/scripts/requirements.txt"
  if [ ! -x "$env/bin/python" ]; then
    echo "qlam: creating the environment in $env (the first run downloads torch, a few GB)"
    mkdir -p "$(dirname "$env")" && python3 -m venv "$env" &&
      "$env/bin/python" -m pip install -q --upgrade pip || return 1
  fi
  # Reinstall the requirements only when their list changed.
  stamp="$env/.qlam-requirements.sha"
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$env/bin/python" -m pip install -q -r "$requirements" || return 1
    echo "$want" > "$stamp"
  fi
  # shellcheck disable=SC1091
  source "$env/bin/activate" || return 1
  # Build the extension against this torch (incremental: build/ keeps the objects).
  echo "qlam: building the extension (with the CUDA kernels when nvcc is present)"
  (cd "$root" && python -m pip install -q --no-build-isolation --no-deps -e .) || {
    echo "qlam: the build failed; see the messages above" >&2
    return 1
  }
}
qlam_env_setup
