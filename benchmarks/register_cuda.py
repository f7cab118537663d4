"""Issue 15's register kernel (csrc/cuda/register_cuda.cu, forward only) against today's CUDA
kernel (one warp per state in shared memory), side by side in one run, on a GPU.

    python benchmarks/register_cuda.py [--quick]

For n = 4, 6, 8 and 256 / 4,096 / 8,192 states (H = 1, L = 2, cnot, float32): the forward time of
`torch.ops.qlam.scan_forward` (today's kernel) and of `torch.ops.qlam._register_forward` at the
host's lanes per state and at every other G that keeps the state in registers, with GFLOP/s and
the fraction of the FP32 peak measured in the same run (an 8192^2 float32 matmul, as
benchmarks/roofline.py). Before timing, every register run's features are checked against
today's kernel. Writes benchmarks/results/register_cuda.json and .md.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402
from flops import forward_flops  # noqa: E402
from roofline import matmul_peak  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

MAX_REGISTERS = 16  # float32 amplitudes per lane the kernel keeps in registers (register_cuda.cu)


def lanes_options(n: int) -> list:
    return [g for g in (1, 2, 4, 8, 16, 32) if g <= 2**n and 2**n // g <= MAX_REGISTERS]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short sequences, fewer points (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not (torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))):
        sys.exit("register_cuda.py: needs a CUDA GPU and qlam built with its CUDA kernels")
    peak = matmul_peak("cuda", 2048 if args.quick else 8192)
    rows = []
    for n in ((4, 8) if args.quick else (4, 6, 8)):
        for S in ((256,) if args.quick else (256, 4096, 8192)):
            T, L = (32 if args.quick else 256), 2
            g = torch.Generator(device="cuda").manual_seed(0)
            angles = torch.rand(S, T, 1, L, n, 3, device="cuda", generator=g) * 6.4 - 3.2
            flop = forward_flops(n, L) * S * T
            call = (angles, None, None, None, "cnot", False, 0)
            want = torch.ops.qlam.scan_forward(*call)[0]
            base = median_time(lambda: torch.ops.qlam.scan_forward(*call), "cuda", 2, args.repeats)
            row = dict(n=n, states=S, T=T, L=L, shared_s=base, shared_frac=flop / base / 1e9 / peak["matmul_gflops"])
            for lanes in [0] + lanes_options(n):
                got = torch.ops.qlam._register_forward(*call, lanes)[0]
                err = (got - want).abs().max().item()
                assert err < 1e-3, f"n={n} S={S} lanes={lanes}: the register kernel's features differ by {err}"
                t = median_time(lambda: torch.ops.qlam._register_forward(*call, lanes), "cuda", 2, args.repeats)
                row[f"register_G{lanes or 'auto'}_s"] = t
            best = min((v, k) for k, v in row.items() if k.startswith("register_G"))
            row.update(best_register=best[1], best_register_s=best[0], speedup=base / best[0],
                       register_frac=flop / best[0] / 1e9 / peak["matmul_gflops"])
            print(row, flush=True)
            rows.append(row)
    meta = machine()
    meta.update(peak, command="python benchmarks/register_cuda.py " + " ".join(sys.argv[1:]), quick=args.quick)
    lines = [
        "# Register kernel vs today's CUDA kernel (forward)", "",
        f"GPU: {meta.get('gpu', '?')}; torch {meta['torch']}. Command: `{meta['command']}`. Float32, H = 1, "
        f"L = 2, cnot; medians (CUDA events). Peak: float32 matmul {peak['matmul_gflops']:.0f} GFLOP/s.", "",
        "| n | states | T | today's kernel | % peak | best register (G) | % peak | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['states']} | {r['T']} | {r['shared_s'] * 1e3:.2f} ms | {100 * r['shared_frac']:.1f} | "
                     f"{r['best_register_s'] * 1e3:.2f} ms ({r['best_register'][len('register_G'):-2]}) | "
                     f"{100 * r['register_frac']:.1f} | {r['speedup']:.2f}x |")
    paths = write_results("register_cuda_quick" if args.quick else "register_cuda", rows, "\n".join(lines) + "\n", meta)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
