#!/usr/bin/env bash
# The one command to run whenever an NVIDIA GPU is available:
#   bash scripts/gpu_check.sh
# It builds qlam with the CUDA kernels for this GPU, runs the CUDA tests (parity
# with the CPU kernels in float64, gradcheck, opcheck), then the latencies the cost
# model assumes (benchmarks/latencies.py), issue 15's register kernels' timings and
# Nsight Compute counters, the CUDA tests again through the register program
# (QLAM_CUDA_PROGRAM=register), compute-sanitizer (memcheck,
# racecheck, synccheck) on a small case, a short sMNIST training, and the other
# GPU benchmarks, which write benchmarks/results/*_cuda.{json,md}.
#
# Each step has a time limit and the whole run a budget (QLAM_GPU_BUDGET_S, default
# 540 s): a step that fails or does not fit is recorded and the next one runs, so
# one bad step never costs the others. Logs and a summary go to QLAM_GPU_LOG_DIR
# (default runs/gpu_check), with results_cuda.tar.gz holding every result file.
#
# QLAM_GPU_STEPS picks the groups of steps to run (comma-separated; default all), so a short
# device lease can spend itself on what decides a question: the build always runs, then
#   tests       the CUDA tests (parity, gradcheck, opcheck, errors, fuzz)
#   latencies   benchmarks/latencies.py (the cost model's latencies, seconds)
#   register    benchmarks/register_cuda.py (issue 15's register kernels against today's)
#   ncu         Nsight Compute on the register kernels (n = 8 and the sMNIST shape)
#   program     the CUDA tests and classical.py through QLAM_CUDA_PROGRAM=register
#   sanitizers  compute-sanitizer memcheck, racecheck, synccheck
#   train       a 300-step sMNIST training
#   benches     bench_scan, classical, roofline, memory
# e.g. QLAM_GPU_STEPS=tests,latencies,register: what decides issue 15 first (its steps' time limits
# add up to 420 s after the build; the build of register_cuda.cu alone took 76 s on one core here).
#
# Python: the environment of scripts/env.sh where it exists (QLAM_ENV or
# ~/.cache/qlam/venv); otherwise the python3 on PATH, if it has torch (GPU
# machines with no package registry). Data: the usual data roots ($QLAM_DATA,
# ../shared/data, ...).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root="$(pwd)"
budget="${QLAM_GPU_BUDGET_S:-540}"
logs="${QLAM_GPU_LOG_DIR:-$root/runs/gpu_check}"
summary="$logs/summary.md"
all_groups="tests latencies register ncu program sanitizers train benches"
groups="${QLAM_GPU_STEPS:-all}"
groups="${groups//,/ }"
[ "$groups" = all ] && groups="$all_groups"
for g in $groups; do
  case " $all_groups " in
    *" $g "*) ;;
    *) echo "gpu_check: unknown step group '$g' in QLAM_GPU_STEPS; the groups are: ${all_groups// /, } (or all)." >&2
       exit 2 ;;
  esac
done
wanted() { case " $groups " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- preflight: stop at once, saying what is missing
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU)." >&2
  echo "gpu_check: this script needs a machine with an NVIDIA GPU and driver, and nvcc; on a CPU machine run 'bash scripts/test.sh'." >&2
  exit 2
fi
if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDACXX:-}" ]; then
  echo "gpu_check: a GPU is here but no nvcc (put the CUDA toolkit's bin on PATH or set CUDACXX)." >&2
  exit 2
fi

if [ -n "${QLAM_ENV:-}" ] || [ -x "$HOME/.cache/qlam/venv/bin/python" ]; then
  use_env=1
elif python3 -c "import torch" >/dev/null 2>&1; then
  use_env=0
else
  echo "gpu_check: no qlam environment and no python3 with torch; run 'source scripts/env.sh' first." >&2
  exit 2
fi

mkdir -p "$logs"
{
  echo "# qlam GPU check"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), steps: ${groups// /, }"
  echo
  echo '```'
  nvidia-smi -L
  nvcc --version | tail -2
  echo '```'
  echo
  echo "| step | result | seconds |"
  echo "| --- | --- | --- |"
} > "$summary"

archive() {  # every result file so far, so a run cut short still returns what it made
  (cd "$root" && tar -czf "$logs/results_cuda.tar.gz" --ignore-failed-read \
    $(ls benchmarks/results/*_cuda* 2>/dev/null) \
    $(ls runs/gpu-smnist-qlam/{results.json,metrics.csv,config.yaml,*.png} 2>/dev/null) 2>/dev/null) || true
}

# step NAME LIMIT_S NEED_S LOG COMMAND...: run COMMAND with a time limit if NEED_S fits the budget left.
failures=0
step() {
  local name="$1" limit="$2" need="$3" log="$4"
  shift 4
  local left=$((budget - SECONDS))
  if [ "$left" -lt "$need" ]; then
    echo "| $name | skipped: ${left} s of the budget left, needs ~${need} s | 0 |" >> "$summary"
    echo "gpu_check: skipping $name (${left} s left of the ${budget} s budget)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "gpu_check: $name (limit ${limit} s) -> $log"
  local start=$SECONDS rc
  { echo "### $name: $*"; } >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local took=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    echo "| $name | ok | $took |" >> "$summary"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "| $name | TIMED OUT after ${limit} s | $took |" >> "$summary"; failures=$((failures + 1))
  else
    echo "| $name | FAILED (exit $rc) | $took |" >> "$summary"; failures=$((failures + 1))
  fi
  tail -n 3 "$log"
  archive
  return "$rc"
}

# ---- build for this GPU's architecture (fast: one target), CUDA required
arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
export QLAM_WITH_CUDA=ON QLAM_CUDA_ARCHS="${QLAM_CUDA_ARCHS:-$arch}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if [ "$use_env" = 1 ]; then
  # shellcheck disable=SC1091
  source scripts/env.sh > "$logs/build.log" 2>&1 || { echo "| build | FAILED | $SECONDS |" >> "$summary"; cat "$summary"; exit 1; }
  echo "| build (env.sh, archs $QLAM_CUDA_ARCHS) | ok | $SECONDS |" >> "$summary"
else
  step "build (archs $QLAM_CUDA_ARCHS)" 400 60 "$logs/build.log" python3 -m pip install --no-build-isolation --no-deps -e . ||
    { cat "$summary"; exit 1; }
fi
PY="$(command -v python || command -v python3)"
"$PY" -m qlam.info >> "$logs/build.log" 2>&1
"$PY" -c "import torch, qlam, sys; sys.exit(0 if qlam._extension.supports(torch.device('cuda')) else 1)" ||
  { echo "| build | the extension has no CUDA kernels (see build.log) | 0 |" >> "$summary"; cat "$summary"; exit 1; }

# ---- correctness first
if wanted tests; then
  step "CUDA tests" 240 30 "$logs/tests.log" "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py tests/test_register_cuda.py tests/test_scan_parity.py tests/test_scan_gradcheck.py \
    tests/test_scan_errors.py tests/test_build_info.py tests/test_latency_probe.py tests/test_fuzz_scan.py -k "not emulated"
fi
# ---- issue 15's register kernels, measured (timings against today's kernels, then their counters
# against the cost model) before the longer checks below, which the budget may cut.
# The latencies the cost model assumes come first (seconds), so register_cuda.py's table also sets
# each point beside the model redone with them.
wanted latencies && step "latency probes (cost model's latencies)" 60 15 "$logs/bench.log" "$PY" benchmarks/latencies.py
wanted register && step "register kernel vs today's" 120 45 "$logs/bench.log" "$PY" benchmarks/register_cuda.py
if wanted ncu && { command -v ncu >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/ncu ]; }; then
  step "Nsight Compute: register kernels vs the cost model" 150 60 "$logs/bench.log" "$PY" benchmarks/ncu_register.py
  # the sMNIST training shape (n = 6, 256 states, rzz), latency-bound: its stall reasons against the model's chain
  step "Nsight Compute: the sMNIST shape's stall reasons" 120 45 "$logs/bench.log" "$PY" benchmarks/ncu_register.py \
    --smnist
elif wanted ncu; then
  echo "| Nsight Compute: register kernels vs the cost model | skipped: no ncu | 0 |" >> "$summary"
fi
if wanted program; then
  # the public op through issue 15's register program (QLAM_CUDA_PROGRAM=register; today's kernels where the
  # state does not fit its registers)
  QLAM_CUDA_PROGRAM=register step "CUDA tests, register program" 150 30 "$logs/tests.log" "$PY" -m pytest -q \
    -p no:cacheprovider tests/test_cuda.py tests/test_scan_parity.py tests/test_scan_gradcheck.py -k "not emulated"
  # issue 15's third goal: a QLAM training step through the register program against cuDNN LSTM's at equal
  # parameters, in one run (classical_cuda_register.md)
  QLAM_CUDA_PROGRAM=register step "classical, register program" 120 45 "$logs/bench.log" "$PY" benchmarks/classical.py \
    --device cuda
fi
if wanted sanitizers; then
  for tool in memcheck racecheck synccheck; do
    # memcheck sees every kernel (torch's too); the hazard checkers only qlam's, which are the ones with shared memory of ours.
    filter=()
    # (kns: a substring of the mangled name; every qlam kernel's starts with _ZN4qlam.)
    [ "$tool" != memcheck ] && filter=(--kernel-name kns=_ZN4qlam)
    step "compute-sanitizer $tool" 180 40 "$logs/sanitizer.log" \
      compute-sanitizer --tool "$tool" --error-exitcode 1 "${filter[@]}" "$PY" scripts/cuda_sanitizer_case.py
  done
fi

# ---- a short training on the real task, full config, on the GPU
if wanted train; then
  step "sMNIST training (full config, 300 steps)" 180 60 "$logs/train.log" "$PY" -m qlam.train configs/smnist/qlam.yaml \
    train.epochs=1 train.max_steps_per_epoch=300 train.device=cuda output.dir=runs output.name=gpu-smnist-qlam \
    output.progress=false --force
fi

# ---- speed: ratios measured side by side in one run
if wanted benches; then
  step "bench_scan" 150 60 "$logs/bench.log" "$PY" benchmarks/bench_scan.py --device cuda --no-compile
  step "classical" 120 45 "$logs/bench.log" "$PY" benchmarks/classical.py --device cuda
  step "roofline" 150 60 "$logs/bench.log" "$PY" benchmarks/roofline.py --device cuda
  step "memory (quick)" 90 40 "$logs/bench.log" "$PY" benchmarks/memory.py --device cuda --quick
fi

archive
echo >> "$summary"
echo "total ${SECONDS} s, ${failures} step(s) failed or timed out" >> "$summary"
cat "$summary"
[ "$failures" -eq 0 ]
