"""The fused scan against the pure-PyTorch reference (eager and compiled) and
against nn.LSTM of comparable size, side by side in one run.

    python benchmarks/bench_scan.py [--device cpu|cuda] [--quick]

Writes benchmarks/results/scan_<device>.json and .md. Times are medians
after a warm-up; ratios come from the same run. The reference is slow at the
sMNIST shape (about a minute per pass on 2 cores), so it is timed once there.
"""
from __future__ import annotations

import argparse
import sys
import os

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402
from qlam import reference  # noqa: E402
from flops import backward_flops, forward_flops  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

SHAPES = {
    "sMNIST B=128": dict(B=128, T=784, H=4, L=2, n=8),
    "sMNIST B=1": dict(B=1, T=784, H=4, L=2, n=8),
    "small B=32 T=128 n=6": dict(B=32, T=128, H=4, L=2, n=6),
    # One state (issue 13's streaming case): 15 of the 16 float32 SIMD lanes have no state to run.
    "one state B=1 H=1 T=256 n=8": dict(B=1, T=256, H=1, L=2, n=8),
}


def compiled_reference_scan():
    """The reference with its per-token step compiled by torch.compile (a whole
    unrolled 784-step loop takes too long to compile)."""

    @torch.compile(dynamic=False)
    def step(psi, gates_t):  # gates_t: (S, L, n, 2, 2)
        n = gates_t.shape[2]
        for layer in range(gates_t.shape[1]):
            for q in range(n):
                psi = reference.apply_1q(psi, gates_t[:, layer, q], q)
            psi = reference.apply_entangler(psi, "cnot", None)
        return psi, reference.features(psi, False)

    def scan(angles):
        B, T, H, L, n, _ = angles.shape
        psi = torch.zeros(B * H, 2**n, dtype=torch.complex64, device=angles.device)
        psi[:, 0] = 1
        gates = reference.rot_matrices(angles).transpose(1, 2).reshape(B * H, T, L, n, 2, 2)
        feats = []
        for t in range(T):
            # contiguous: the slice's strides depend on T and would force a recompile per length
            psi, f = step(psi, gates[:, t].contiguous())
            feats.append(f)
        return torch.stack(feats, 1).reshape(B, H, T, -1).transpose(1, 2), psi.reshape(B, H, -1)

    return scan


# The reference's autograd graph keeps ~(2 L n + 8) states per token: at the sMNIST
# shape that is ~33 GB, more than this machine has. Its forward+backward is then
# timed on the largest batch slice that fits this budget, and the kernel's on the
# same slice, so the ratio stays like for like (the table says which batch).
REFERENCE_GRAPH_BUDGET = 6 * 2**30


def reference_backward_batch(B, T, H, L, n) -> int:
    per_sequence = H * T * 2**n * 8 * (2 * L * n + 8)
    b = B
    while b > 1 and b * per_sequence > REFERENCE_GRAPH_BUDGET:
        b //= 2
    return b


def fwd(fn, angles):
    return lambda: fn(angles.detach())


def fwd_bwd(fn, angles):
    def run():
        a = angles.detach().requires_grad_()
        features, final = fn(a)
        (features.sum() + final.real.sum()).backward()
    return run


def module_pair(shape, device):
    """A QLAM layer and an nn.LSTM with about as many parameters, input of 1 feature."""
    layer = qlam.QLAM(1, 64, batch_first=True, n_qubits=shape["n"], n_heads=shape["H"], depth=shape["L"]).to(device)
    params = sum(p.numel() for p in layer.parameters())
    hidden = 1
    while sum(p.numel() for p in nn.LSTM(1, hidden + 1).parameters()) <= params:
        hidden += 1
    lstm = nn.LSTM(1, hidden, batch_first=True).to(device)
    return layer, lstm, params, sum(p.numel() for p in lstm.parameters())


def module_step(module, x):
    def run():
        out, _ = module(x)
        out.square().mean().backward()
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="short sequences (a smoke test, not for the table)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd reference")
    args = parser.parse_args(argv)
    device = args.device
    rows = []
    compiled = None if args.no_compile else compiled_reference_scan()
    for name, shape in SHAPES.items():
        shape = dict(shape)
        if args.quick:
            shape["T"] = 16
        B, T, H, L, n = (shape[k] for k in "BTHLn")
        torch.manual_seed(0)
        angles = torch.randn(B, T, H, L, n, 3, device=device)
        state_tokens = B * T * H
        flops_f = forward_flops(n, L) * state_tokens
        flops_fb = flops_f + backward_flops(n, L) * state_tokens
        row = dict(shape=name, **shape, flops_forward=flops_f, flops_forward_backward=flops_fb)
        slow_repeats = 1 if T * B >= 100_000 else args.repeats
        print(f"[{name}] kernel ...", flush=True)
        row["kernel_fwd_s"] = median_time(fwd(qlam.ops.scan, angles), device, 1, args.repeats)
        row["kernel_fwdbwd_s"] = median_time(fwd_bwd(qlam.ops.scan, angles), device, 1, args.repeats)
        bwd_B = reference_backward_batch(B, T, H, L, n)
        sliced = angles[:bwd_B]
        row["fwdbwd_compare_B"] = bwd_B
        row["kernel_fwdbwd_compare_s"] = (row["kernel_fwdbwd_s"] if bwd_B == B else
                                          median_time(fwd_bwd(qlam.ops.scan, sliced), device, 1, args.repeats))
        print(f"[{name}] reference (forward+backward at B={bwd_B}) ...", flush=True)
        warm = angles[:, : min(T, 4)]  # warms the allocator and code paths cheaply
        reference.scan(warm)
        row["reference_fwd_s"] = median_time(fwd(reference.scan, angles), device, 0, slow_repeats)
        row["reference_fwdbwd_s"] = median_time(fwd_bwd(reference.scan, sliced), device, 0, slow_repeats)
        if compiled is not None:
            print(f"[{name}] compiled reference ...", flush=True)
            compiled(angles[:, :2])  # compiles the step
            row["compiled_fwd_s"] = median_time(fwd(compiled, angles), device, 0, slow_repeats)
            row["compiled_fwdbwd_s"] = median_time(fwd_bwd(compiled, sliced), device, 0, slow_repeats)
        print(f"[{name}] QLAM layer vs nn.LSTM ...", flush=True)
        layer, lstm, p_q, p_l = module_pair(shape, device)
        x = torch.randn(B, T, 1, device=device)
        row.update(qlam_layer_params=p_q, lstm_params=p_l, lstm_hidden=lstm.hidden_size)
        row["qlam_layer_step_s"] = median_time(module_step(layer, x), device, 1, args.repeats)
        row["lstm_step_s"] = median_time(module_step(lstm, x), device, 1, args.repeats)
        rows.append(row)
        print(row, flush=True)
    write(rows, device, args)


def write(rows, device, args):
    meta = machine()
    meta.update(device=device, quick=args.quick, command="python benchmarks/bench_scan.py " + " ".join(sys.argv[1:]))
    lines = [
        f"# Fused scan vs reference and nn.LSTM ({device})",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads" + (f", {meta['gpu']}" if "gpu" in meta else "")
        + f"; torch {meta['torch']}. Command: `{meta['command']}`. Medians after warm-up; float32.",
        "",
        "Forward at the full shape; forward+backward at batch `B cmp` (the reference's autograd graph",
        "at the full sMNIST batch does not fit in memory), kernel and reference on the same batch.",
        "",
        "| shape | kernel fwd | GFLOP/s fwd | reference fwd | compiled ref. fwd | speed-up fwd (vs compiled) "
        "| B cmp | kernel fwd+bwd | GFLOP/s fwd+bwd | reference fwd+bwd | compiled ref. fwd+bwd "
        "| speed-up fwd+bwd (vs compiled) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        comp_f, comp_fb = r.get("compiled_fwd_s"), r.get("compiled_fwdbwd_s")
        k_fb = r["kernel_fwdbwd_compare_s"]
        fb_flops = r["flops_forward_backward"] * r["fwdbwd_compare_B"] / r["B"]
        lines.append(
            f"| {r['shape']} | {r['kernel_fwd_s']:.4f} s | {r['flops_forward'] / r['kernel_fwd_s'] / 1e9:.1f} "
            f"| {r['reference_fwd_s']:.2f} s | {'%.2f s' % comp_f if comp_f else 'not run'} "
            f"| {r['reference_fwd_s'] / r['kernel_fwd_s']:.0f}x ({'%.0fx' % (comp_f / r['kernel_fwd_s']) if comp_f else '-'}) "
            f"| {r['fwdbwd_compare_B']} | {k_fb:.4f} s | {fb_flops / k_fb / 1e9:.1f} "
            f"| {r['reference_fwdbwd_s']:.2f} s | {'%.2f s' % comp_fb if comp_fb else 'not run'} "
            f"| {r['reference_fwdbwd_s'] / k_fb:.0f}x ({'%.0fx' % (comp_fb / k_fb) if comp_fb else '-'}) |"
        )
    lines += ["", "Training step (forward + backward of mean squared output) of the layer, input of 1 feature:", "",
              "| shape | QLAM layer (params) | step | nn.LSTM (params, hidden) | step | QLAM / LSTM time |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['qlam_layer_params']} | {r['qlam_layer_step_s']:.3f} s | {r['lstm_params']}, "
            f"{r['lstm_hidden']} | {r['lstm_step_s']:.3f} s | {r['qlam_layer_step_s'] / r['lstm_step_s']:.2f} |"
        )
    name = f"scan_{device}" + ("_quick" if args.quick else "")
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
