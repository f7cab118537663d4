"""Issue 15's register kernels (csrc/cuda/register_cuda.cu, forward and backward) against today's
CUDA kernels (one warp per state in shared memory), side by side in one run, on a GPU.

    python benchmarks/register_cuda.py [--quick]

For n = 4, 6, 8 and 256 / 4,096 / 8,192 states (H = 1, L = 2, cnot, float32): the forward time of
`torch.ops.qlam.scan_forward` (today's kernel) and of `torch.ops.qlam._register_forward` at the
host's lanes per state and at every other G that keeps the state in registers, with GFLOP/s and
the fraction of the FP32 peak measured in the same run (an 8192^2 float32 matmul, as
benchmarks/roofline.py); then the backward of the features' gradient (no checkpoints, what
qlam.ops.scan's autograd runs): `torch.ops.qlam.scan_backward` against
`torch.ops.qlam._register_backward` at every G, and forward + backward, today's against the best
register forward plus the best register backward. Then the sMNIST config's shape
(configs/smnist/qlam.yaml: n = 6, rzz, 784 tokens, 4 heads; batch 64 as in training and 500 as in
evaluation). Every point is set beside benchmarks/cost_model.py's prediction for this GPU (ns per
state-token, the host's G), so the measurement checks the model. Every register run's features and
angle gradients are checked against today's kernels; a run that disagrees is still timed, listed above the
tables, and makes the script exit non-zero once the results are written. Writes
benchmarks/results/register_cuda.json and .md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402
from qlam.info import cuda_program  # noqa: E402
from flops import backward_flops, forward_flops  # noqa: E402
from roofline import matmul_peak  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

import cost_model  # noqa: E402
import latencies  # noqa: E402

# float32 amplitudes per lane the kernels keep in registers (register_program.h, kMaxForwardRegisters and
# kMaxBackwardRegisters).
MAX_REGISTERS = 16
MAX_BACKWARD_REGISTERS = 16
# Largest difference from today's kernels (features absolute, angle gradients relative to their largest) a
# register run may show in float32.
TOLERANCE = 1e-3


def lanes_options(n: int, max_registers: int = MAX_REGISTERS) -> list:
    return [g for g in (1, 2, 4, 8, 16, 32) if g <= 2**n and 2**n // g <= max_registers]


def best_of(row: dict, prefix: str) -> tuple:
    """(seconds, G) of the fastest register run whose key starts with prefix."""
    t, key = min((v, k) for k, v in row.items() if k.startswith(prefix))
    return t, key[len(prefix):-2]


def points(quick: bool) -> list:
    """(n, batch, heads, entangler, tokens) per measured point, the ones that decide issue 15 first (a run
    cut short keeps what it measured): the sMNIST config's training shape (n = 6, rzz, 784 tokens, 4 heads,
    batch 64), the goal point (n = 8, 4,096 states), the evaluation batch (500), then the rest of the cnot
    grid at H = 1."""
    grid = [(n, S, 1, "cnot", 32 if quick else 256) for n in ((4, 8) if quick else (4, 6, 8))
            for S in ((256,) if quick else (256, 4096, 8192))]
    first = [(6, 64, 4, "rzz", 64 if quick else 784)] + ([] if quick else [(8, 4096, 1, "cnot", 256),
                                                                           (6, 500, 4, "rzz", 784)])
    return first + [p for p in grid if p not in first]


def model_gpu(device_name: str) -> str:
    """cost_model's GPU for this device: H200 or A100 by name, else the H100 (the model's H200 is an H100
    with more DRAM bandwidth)."""
    return next((g for g in ("H200", "A100") if g in device_name), "H100")


def predicted(gpu: str, n: int, states: int, entangler: str, probed: Optional[dict] = None) -> dict:
    """cost_model's ns per state-token (forward, forward + backward) for both programs at the host's G:
    model_* with the model's latencies; with probed (benchmarks/latencies.py's measured cycles on this GPU)
    also probed_model_* with those."""
    out = {}
    for prefix, lat in [("model", None)] + ([("probed_model", probed)] if probed else []):
        with cost_model.latencies(*latencies.probed_latencies(lat)) if lat else contextlib.nullcontext():
            for design in ("shared", "register"):
                for pass_, key in (("forward", "fwd"), ("forward+backward", "fwd_bwd")):
                    row = cost_model.predict(design, gpu, n, states, pass_, entangler)
                    out[f"{prefix}_{design}_{key}_ns"] = row["ns_per_state_token"] if row else float("nan")
    return out


def checked_time(run, want, scale: float, what: str, mismatches: list, repeats: int) -> float:
    """run()'s median time. Its result is checked against want first (largest difference / scale); one beyond
    TOLERANCE is recorded in mismatches ("<what> differ from today's by ..."), and timed anyway: a wrong
    kernel's speed still tells something."""
    err = (run() - want).abs().max().item() / scale
    if not err < TOLERANCE:
        mismatches.append(f"{what} differ from today's by {err:.3g}")
    return median_time(run, "cuda", 2, repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short sequences, fewer points (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    # the baseline is today's program; the CUDA scan reads this variable at every call
    if cuda_program() != "shared":
        print("register_cuda.py: QLAM_CUDA_PROGRAM unset for this run: today's kernel is the baseline", flush=True)
    os.environ.pop("QLAM_CUDA_PROGRAM", None)
    if not (torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))):
        sys.exit("register_cuda.py: needs a CUDA GPU and qlam built with its CUDA kernels")
    peak = matmul_peak("cuda", 2048 if args.quick else 8192)
    gpu = model_gpu(torch.cuda.get_device_name())
    probed = latencies.load(latencies.RESULTS, torch.cuda.get_device_name())  # this GPU's, if measured
    rows, mismatches, planned = [], [], points(args.quick)
    meta = machine()
    meta.update(peak, command="python benchmarks/register_cuda.py " + " ".join(sys.argv[1:]), quick=args.quick,
                mismatches=mismatches, points_planned=len(planned))
    for n, B, H, entangler, T in planned:
        S, L = B * H, 2
        g = torch.Generator(device="cuda").manual_seed(0)
        angles = torch.rand(B, T, H, L, n, 3, device="cuda", generator=g) * 6.4 - 3.2
        ent = (torch.rand(B, T, H, L, cost_model.num_pairs(n), device="cuda", generator=g) * 6.4 - 3.2
               if entangler == "rzz" else None)
        flop = forward_flops(n, L, entangler) * S * T
        call = (angles, ent, None, None, entangler, False, 0)
        want = torch.ops.qlam.scan_forward(*call)[0]
        base = median_time(lambda: torch.ops.qlam.scan_forward(*call), "cuda", 2, args.repeats)
        row = dict(n=n, states=S, heads=H, entangler=entangler, T=T, L=L, shared_s=base,
                   shared_frac=flop / base / 1e9 / peak["matmul_gflops"], model_gpu=gpu,
                   **predicted(gpu, n, S, entangler, probed))
        for lanes in [0] + lanes_options(n):
            row[f"register_G{lanes or 'auto'}_s"] = checked_time(
                lambda: torch.ops.qlam._register_forward(*call, lanes)[0], want, 1.0,
                f"n={n} S={S} lanes={lanes or 'auto'}: the register forward's features", mismatches, args.repeats)
        best_s, best_g = best_of(row, "register_G")
        row.update(best_register=best_g, best_register_s=best_s, speedup=base / best_s,
                   register_frac=flop / best_s / 1e9 / peak["matmul_gflops"])
        # Backward of a features' gradient from today's saved final state (no checkpoints).
        _, final, checkpoints = torch.ops.qlam.scan_forward(*call)
        grad = torch.randn(want.shape, device="cuda", generator=g)
        bcall = (grad, None, angles, ent, final, checkpoints, None, entangler, False, 0)
        want_grad = torch.ops.qlam.scan_backward(*bcall)[0]
        scale = max(1.0, want_grad.abs().max().item())
        base_bwd = median_time(lambda: torch.ops.qlam.scan_backward(*bcall), "cuda", 2, args.repeats)
        bwd_flop = backward_flops(n, L, entangler) * S * T
        row.update(shared_bwd_s=base_bwd, shared_bwd_frac=bwd_flop / base_bwd / 1e9 / peak["matmul_gflops"])
        for lanes in [0] + lanes_options(n, MAX_BACKWARD_REGISTERS):
            row[f"register_bwd_G{lanes or 'auto'}_s"] = checked_time(
                lambda: torch.ops.qlam._register_backward(*bcall, lanes)[0], want_grad, scale,
                f"n={n} S={S} lanes={lanes or 'auto'}: the register backward's angle gradients (relative to their "
                "largest)", mismatches, args.repeats)
        bwd_s, bwd_g = best_of(row, "register_bwd_G")
        row.update(best_register_bwd=bwd_g, best_register_bwd_s=bwd_s, bwd_speedup=base_bwd / bwd_s,
                   register_bwd_frac=bwd_flop / bwd_s / 1e9 / peak["matmul_gflops"],
                   shared_fwd_bwd_s=base + base_bwd, register_fwd_bwd_s=best_s + bwd_s,
                   fwd_bwd_speedup=(base + base_bwd) / (best_s + bwd_s))
        # ns per state-token as measured, at the host's G (what the model predicts)
        per = 1e9 / (S * T)
        row.update(shared_fwd_ns=base * per, register_fwd_ns=row["register_Gauto_s"] * per,
                   shared_fwd_bwd_ns=(base + base_bwd) * per,
                   register_fwd_bwd_ns=(row["register_Gauto_s"] + row["register_bwd_Gauto_s"]) * per)
        print(row, flush=True)
        rows.append(row)
        # written after every point, so a run stopped by a time limit keeps the points it measured
        meta["points_measured"] = len(rows)
        paths = write_results("register_cuda_quick" if args.quick else "register_cuda", rows, markdown(rows, meta),
                              meta)
    print("wrote", *paths)
    if mismatches:
        sys.exit("register_cuda.py: the register kernels disagree with today's (timed anyway; see the table):\n  "
                 + "\n  ".join(mismatches))


def ratio(measured: float, model: float) -> str:
    """`measured / model (ratio)`, or the measurement alone where the model has no figure (NaN)."""
    if model == model and model > 0:
        return f"{measured:.2f} / {model:.2f} ({measured / model:.2f}x)"
    return f"{measured:.2f} / -"


def model_table(rows: list, prefix: str) -> list:
    """Each point measured against the prediction under `prefix` (model_ or probed_model_ keys)."""
    lines = ["| n | states | entangler | today's fwd | register fwd | today's fwd + bwd | register fwd + bwd |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['states']} | {r['entangler']} "
                     f"| {ratio(r['shared_fwd_ns'], r[prefix + '_shared_fwd_ns'])} "
                     f"| {ratio(r['register_fwd_ns'], r[prefix + '_register_fwd_ns'])} "
                     f"| {ratio(r['shared_fwd_bwd_ns'], r[prefix + '_shared_fwd_bwd_ns'])} "
                     f"| {ratio(r['register_fwd_bwd_ns'], r[prefix + '_register_fwd_bwd_ns'])} |")
    return lines


def markdown(rows: list, meta: dict) -> str:
    """The tables: forward, then backward and forward + backward (both at each program's best G), then
    measured against cost_model.py's prediction (ns per state-token at the host's G)."""
    lines = [
        "# Register kernels vs today's CUDA kernels (forward, backward)", "",
        f"GPU: {meta.get('gpu', '?')}; torch {meta['torch']}. Command: `{meta['command']}`. Float32, L = 2; "
        f"medians (CUDA events). Peak: float32 matmul {meta['matmul_gflops']:.0f} GFLOP/s.", "",
        *([f"**{meta['points_measured']} of the {meta['points_planned']} points measured** (the run stopped or is "
           "still going; the table is written after each point).", ""]
          if meta.get("points_measured", 0) < meta.get("points_planned", 0) else []),
        *([f"**The register kernels disagree with today's ({len(meta['mismatches'])} runs beyond {TOLERANCE:g}); "
           "their timings below are of wrong results:**", ""] + [f"- {m}" for m in meta["mismatches"]] + [""]
          if meta.get("mismatches") else []),
        "| n | states (heads) | entangler | T | today's kernel | % peak | best register (G) | % peak | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['states']} ({r['heads']}) | {r['entangler']} | {r['T']} "
                     f"| {r['shared_s'] * 1e3:.2f} ms | {100 * r['shared_frac']:.1f} | "
                     f"{r['best_register_s'] * 1e3:.2f} ms ({r['best_register']}) | "
                     f"{100 * r['register_frac']:.1f} | {r['speedup']:.2f}x |")
    lines += [
        "", "Backward (features' gradient, no checkpoints) and forward + backward (today's kernels against the "
        "best register forward plus the best register backward):", "",
        "| n | states | entangler | T | today's backward | % peak | best register backward (G) | % peak | speed-up | "
        "today's fwd + bwd | register fwd + bwd | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['states']} | {r['entangler']} | {r['T']} | {r['shared_bwd_s'] * 1e3:.2f} ms | "
                     f"{100 * r['shared_bwd_frac']:.1f} | {r['best_register_bwd_s'] * 1e3:.2f} ms "
                     f"({r['best_register_bwd']}) | {100 * r['register_bwd_frac']:.1f} | {r['bwd_speedup']:.2f}x | "
                     f"{r['shared_fwd_bwd_s'] * 1e3:.2f} ms | {r['register_fwd_bwd_s'] * 1e3:.2f} ms | "
                     f"{r['fwd_bwd_speedup']:.2f}x |")
    gpu = rows[0]["model_gpu"] if rows else "?"
    lines += [
        "", f"Measured against benchmarks/cost_model.py's prediction for the {gpu} (ns per state-token, measured / "
        "model (ratio); the register kernels at the host's G, as the model predicts them). The gap is for "
        "benchmarks/NOTES.md to explain.", ""] + model_table(rows, "model")
    if rows and "probed_model_register_fwd_ns" in rows[0]:
        lines += ["", "The same with the latencies benchmarks/latencies.py measured on this GPU (latencies_cuda.md) in "
                  "place of the model's:", ""] + model_table(rows, "probed_model")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
