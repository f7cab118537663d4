"""How close qlam.ops.scan comes to the machine's FP32 peak, by qubit count and batch.

    python benchmarks/roofline.py [--device cpu|cuda] [--quick]

For n = 4..12 qubits and S = B*H states from 1 to 8192 (H = 1: the kernels
treat every (b, h) state alike), times the forward and forward+backward of the
scan (L = 2, cnot, float32) and reports achieved GFLOP/s (flops.py's count),
the bytes that must move, the fraction of the measured peak and the time per
state-gate (one 2x2 gate on one state of 2**n amplitudes; L*n per token).
T is chosen per point so a forward+backward would take --target seconds at a
quarter of the peak (capped at 4096 tokens).

Bytes that must move (float32, complex64 state, N = 2**n, K = 3n, A = 3 L n):
  forward:          4 S T (A + K) angles in, features out, + 2 x 8 S N state in and out;
  forward+backward: that, + 4 S T (2A + K) (angles again, their gradient, feature
                    gradients) + 3 x 8 S N (final state, its gradient, initial-state gradient).

The peak is measured here: on CPU an FMA loop in C (12 independent vector FMA
chains in registers, one thread per torch thread, compiled with the system's
cc for this CPU), rated by each thread's CPU time so that other jobs sharing
the cores do not lower it (its wall-clock rate is stored too), and a large
float32 matmul; the FMA loop is the peak when it builds, else the matmul. The
scan is timed by wall clock, so on a shared machine its fraction of peak is a
lower bound. On CUDA: a large float32 matmul with TF32 off.

Writes benchmarks/results/roofline_<device>[_quick].{json,md} and a PNG of
time per state-token against n.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402,F401
from flops import backward_flops, forward_flops  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

NS = (4, 6, 8, 10, 12)
STATES = (1, 4, 16, 64, 256, 1024, 4096, 8192)
L = 2
T_MAX = 4096

FMA_SOURCE = r"""
typedef float v16 __attribute__((vector_size(64)));
/* 12 independent chains in registers hide the FMA latency (4 cycles) on 2 pipes. */
#define STEP(x) x = x * m + c;
float fma_loop(long iters) {
    v16 m, c, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    for (int i = 0; i < 16; ++i) {
        m[i] = 0.999999f; c[i] = 1e-7f;
        a0[i] = i; a1[i] = i + 1; a2[i] = i + 2; a3[i] = i + 3; a4[i] = i + 4; a5[i] = i + 5;
        a6[i] = i + 6; a7[i] = i + 7; a8[i] = i + 8; a9[i] = i + 9; a10[i] = i + 10; a11[i] = i + 11;
    }
    for (long k = 0; k < iters; ++k) {
        STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5)
        STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)
    }
    v16 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    float t = 0;
    for (int i = 0; i < 16; ++i) t += s[i];
    return t;
}
"""
FMA_FLOPS_PER_ITER = 12 * 16 * 2


def fma_peak(threads: int, seconds: float = 0.5) -> dict:
    """GFLOP/s of the C FMA loop run in `threads` threads at once (ctypes releases the GIL)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return {"fma_error": "no C compiler (cc, gcc, clang) on PATH"}
    folder = tempfile.mkdtemp(prefix="qlam_fma_")
    try:
        src, lib = os.path.join(folder, "fma.c"), os.path.join(folder, "fma.so")
        with open(src, "w") as f:
            f.write(FMA_SOURCE)
        flags = ["-O2", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC"]
        done = subprocess.run([cc, *flags, src, "-o", lib], capture_output=True, text=True)
        if done.returncode != 0:
            return {"fma_error": f"{cc} {' '.join(flags)} failed: {done.stderr.strip()[-500:]}"}
        fn = ctypes.CDLL(lib).fma_loop
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_float
        fn(1000)
        iters = 1000
        while True:  # calibrate one thread's iteration count to `seconds`
            t0 = time.perf_counter()
            fn(iters)
            dt = time.perf_counter() - t0
            if dt > 0.05:
                break
            iters *= 4
        iters = int(iters * seconds / dt)
        rates, walls, best = [], [], 0.0

        def timed():  # the thread's own CPU time: the rate of a core while it runs, whatever else shares it
            c0 = time.thread_time()
            fn(iters)
            rates.append(iters * FMA_FLOPS_PER_ITER / (time.thread_time() - c0) / 1e9)

        for _ in range(3):
            rates.clear()
            workers = [threading.Thread(target=timed) for _ in range(threads)]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            walls.append(threads * iters * FMA_FLOPS_PER_ITER / (time.perf_counter() - t0) / 1e9)
            best = max(best, sum(rates))
        return {"fma_gflops": best, "fma_gflops_wall_clock": max(walls), "fma_compile": f"{cc} {' '.join(flags)}",
                "fma_threads": threads}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def matmul_peak(device: str, size: int) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 proper, not TF32
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = median_time(lambda: torch.mm(a, b), device, warmup=1, repeats=5)
    return {"matmul_gflops": 2 * size**3 / seconds / 1e9, "matmul_size": size}


def measure_peak(device: str, quick: bool) -> dict:
    peak = matmul_peak(device, 1024 if quick else (2048 if device == "cpu" else 8192))
    if device == "cpu":
        peak.update(fma_peak(torch.get_num_threads(), 0.2 if quick else 0.5))
    if "fma_gflops" in peak:
        peak.update(peak_gflops=max(peak["fma_gflops"], peak["matmul_gflops"]), peak_source="FMA loop in C")
    else:
        peak.update(peak_gflops=peak["matmul_gflops"], peak_source="float32 matmul (torch.mm)")
    return peak


def bytes_moved(S: int, T: int, n: int, backward: bool) -> int:
    A, K, N = 3 * L * n, 3 * n, 2**n
    moved = 4 * S * T * (A + K) + 2 * 8 * S * N
    if backward:
        moved += 4 * S * T * (2 * A + K) + 3 * 8 * S * N
    return moved


def fwd_bwd(angles):
    def run():
        a = angles.detach().requires_grad_()
        features, final = qlam.ops.scan(a)
        (features.sum() + final.real.sum()).backward()
    return run


def measure_point(n: int, S: int, device: str, target: float, repeats: int, assumed_gflops: float) -> dict:
    # T from the flop count at an assumed rate (not from a timed probe: noisy on a shared machine)
    per_token = (forward_flops(n, L) + backward_flops(n, L)) * S / (assumed_gflops * 1e9)
    T = max(1, min(T_MAX, int(target / per_token)))
    torch.manual_seed(0)
    angles = torch.randn(S, T, 1, L, n, 3, device=device)
    fwd_s = median_time(lambda: qlam.ops.scan(angles), device, warmup=1, repeats=repeats)
    fb_s = median_time(fwd_bwd(angles), device, warmup=1, repeats=repeats)
    state_tokens = S * T
    f_flops = forward_flops(n, L) * state_tokens
    fb_flops = f_flops + backward_flops(n, L) * state_tokens
    row = dict(n=n, states=S, T=T, L=L, fwd_s=fwd_s, fwdbwd_s=fb_s, flops_fwd=f_flops, flops_fwdbwd=fb_flops,
               bytes_fwd=bytes_moved(S, T, n, False), bytes_fwdbwd=bytes_moved(S, T, n, True))
    for kind, seconds, flops in (("fwd", fwd_s, f_flops), ("fwdbwd", fb_s, fb_flops)):
        row[f"gflops_{kind}"] = flops / seconds / 1e9
        row[f"flops_per_byte_{kind}"] = flops / row[f"bytes_{kind}"]
        row[f"ns_per_state_gate_{kind}"] = seconds / (state_tokens * L * n) * 1e9
        row[f"ns_per_state_token_{kind}"] = seconds / state_tokens * 1e9
    return row


def plot(rows, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    batches = sorted({r["states"] for r in rows})
    shown = [b for b in batches if b in (1, 64, 1024, max(batches))] or batches
    for i, S in enumerate(shown):
        pts = sorted((r for r in rows if r["states"] == S), key=lambda r: r["n"])
        color = f"C{i}"
        ax.plot([r["n"] for r in pts], [r["ns_per_state_token_fwd"] for r in pts], "o-", color=color,
                label=f"forward, S={S}")
        ax.plot([r["n"] for r in pts], [r["ns_per_state_token_fwdbwd"] for r in pts], "s--", color=color,
                label=f"forward+backward, S={S}")
    ax.set_yscale("log")
    ax.set_xlabel("qubits n (state of 2**n amplitudes)")
    ax.set_ylabel("time per state-token (ns)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="n = 4, 8 and three batches (a smoke test)")
    parser.add_argument("--target", type=float, default=None,
                        help="seconds per forward+backward call at each point (default 0.5; quick 0.05)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 avoids stalls when other jobs share the cores")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    ns, states = ((4, 8), (1, 16, 256)) if args.quick else (NS, STATES)
    target = args.target or (0.05 if args.quick else 0.5)

    print("measuring the FP32 peak ...", flush=True)
    peak = measure_peak(device, args.quick)
    print(peak, flush=True)
    rows = []
    for n in ns:
        for S in states:
            row = measure_point(n, S, device, target, args.repeats, 0.25 * peak["peak_gflops"])
            row["fraction_of_peak_fwd"] = row["gflops_fwd"] / peak["peak_gflops"]
            row["fraction_of_peak_fwdbwd"] = row["gflops_fwdbwd"] / peak["peak_gflops"]
            rows.append(row)
            print(f"n={n:2d} S={S:5d} T={row['T']:5d}: fwd {row['fwd_s']:.4f} s {row['gflops_fwd']:6.1f} GFLOP/s "
                  f"({row['fraction_of_peak_fwd']:.1%}), fwd+bwd {row['fwdbwd_s']:.4f} s "
                  f"{row['gflops_fwdbwd']:6.1f} GFLOP/s ({row['fraction_of_peak_fwdbwd']:.1%})", flush=True)

    name = f"roofline_{device}" + ("_quick" if args.quick else "")
    meta = machine()
    meta.update(device=device, quick=args.quick, peak=peak, L=L, H=1, entangler="cnot", dtype="float32",
                target_s=target, command="python benchmarks/roofline.py " + " ".join(sys.argv[1:]))
    lines = [
        f"# Roofline of qlam.ops.scan ({device})",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads" + (f", {meta['gpu']}" if "gpu" in meta else "")
        + f"; torch {meta['torch']}. Command: `{meta['command']}`.",
        f"FP32 peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['peak_source']}"
        + (f", rated by thread CPU time; by wall clock {peak['fma_gflops_wall_clock']:.0f}" if "fma_gflops" in peak else "")
        + f"); float32 matmul "
        f"{peak['matmul_size']}^2 reaches {peak['matmul_gflops']:.0f} GFLOP/s"
        + (f"; FMA loop: {peak['fma_error']}" if "fma_error" in peak else "") + ".",
        f"L = {L}, cnot ring, float32, H = 1 (S = B*H states); medians after warm-up; T sized per point.",
        "flop/B = arithmetic intensity against the bytes that must move (see the script's docstring).",
        "",
        "| n | S | T | fwd GFLOP/s | fwd % peak | fwd ns/state-gate | flop/B fwd | fwd+bwd GFLOP/s "
        "| fwd+bwd % peak | fwd+bwd ns/state-gate | flop/B fwd+bwd |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['states']} | {r['T']} | {r['gflops_fwd']:.1f} | {r['fraction_of_peak_fwd']:.1%} "
            f"| {r['ns_per_state_gate_fwd']:.1f} | {r['flops_per_byte_fwd']:.0f} | {r['gflops_fwdbwd']:.1f} "
            f"| {r['fraction_of_peak_fwdbwd']:.1%} | {r['ns_per_state_gate_fwdbwd']:.1f} "
            f"| {r['flops_per_byte_fwdbwd']:.0f} |")
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(folder, exist_ok=True)
    png = os.path.join(folder, f"{name}.png")
    plot(rows, png, f"qlam.ops.scan, {meta['cpu']} x{meta['cpu_threads']}, L={L}, float32")
    lines += ["", f"![time per state-token vs n]({name}.png)"]
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths, png)


if __name__ == "__main__":
    main()
