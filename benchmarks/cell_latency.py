"""Per-token latency of qlam.QLAMCell against nn.LSTMCell at equal parameter counts.

    python benchmarks/cell_latency.py [--device cpu|cuda] [--threads 1] [--batches 1 16] [--quick]

Step-by-step use (decoding, streaming, control loops): one token in, the state
carried from the previous call. Timed: the forward of one token under
torch.no_grad(), float32, at batch 1 and batch 16. The QLAMCell has the layer's
defaults (n = 6 qubits, 4 heads, depth 2, rzz, fixed step, 4 measurements) at
input and hidden size 128 (the width of benchmarks/classical.py's QLAM block);
the nn.LSTMCell has the same input size and the hidden size whose parameter
count is closest to the QLAMCell's (both counts are in the table). The two
cells are timed in alternating rounds of single calls, so load from other jobs
falls on both alike; medians over all calls after a warm-up. On CPU it runs on
one thread by default (--threads 0: torch's default).
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402
from timing import machine, sync, write_results  # noqa: E402


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lstm_cell_hidden(input_size: int, target: int) -> int:
    """The nn.LSTMCell hidden size whose parameter count 4h(input + h) + 8h is closest to target."""
    best = None
    for h in range(1, 4096):
        n = 4 * h * (input_size + h) + 8 * h
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (h, n)
        if n > target:
            break
    return best[0]


def stepper(cell, x, state):
    """One token per call, the state carried from the previous call (LSTMCell: the pair (h, c))."""
    box = [state]

    def run():
        with torch.no_grad():
            out = cell(x, box[0])
        box[0] = out[1] if isinstance(cell, qlam.QLAMCell) else out
    return run


def time_calls(fn, device: str, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--n-qubits", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds per batch size")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per cell per round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per cell first")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 20 calls (a smoke test)")
    parser.add_argument("--note", default="", help="a sentence for the markdown (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if args.quick:
        args.rounds, args.calls, args.warmup = 3, 20, 20
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")

    torch.manual_seed(0)
    cell = qlam.QLAMCell(args.input_size, args.hidden_size, n_qubits=args.n_qubits, device=device).eval()
    qlam_params = count(cell)
    lstm_hidden = lstm_cell_hidden(args.input_size, qlam_params)
    lstm = nn.LSTMCell(args.input_size, lstm_hidden, device=device).eval()
    lstm_params = count(lstm)
    print(f"QLAMCell({args.input_size}, {args.hidden_size}, n_qubits={args.n_qubits}): {qlam_params} parameters; "
          f"nn.LSTMCell({args.input_size}, {lstm_hidden}): {lstm_params} parameters", flush=True)

    rows = []
    for B in args.batches:
        x = torch.randn(B, args.input_size, device=device)
        zeros = torch.zeros(B, lstm_hidden, device=device)
        runs = {"QLAMCell": stepper(cell, x, cell.initial_state(B)), "nn.LSTMCell": stepper(lstm, x, (zeros, zeros))}
        for fn in runs.values():
            time_calls(fn, device, args.warmup)
        samples = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                samples[name] += time_calls(fn, device, args.calls)
        med = {name: statistics.median(s) for name, s in samples.items()}
        for name, s in samples.items():
            row = dict(B=B, model=name, params=qlam_params if name == "QLAMCell" else lstm_params,
                       hidden_size=args.hidden_size if name == "QLAMCell" else lstm_hidden,
                       median_s=med[name], p10_s=statistics.quantiles(s, n=10)[0],
                       p90_s=statistics.quantiles(s, n=10)[-1], calls=len(s),
                       vs_lstm=med[name] / med["nn.LSTMCell"])
            rows.append(row)
            print(f"[B={B}] {name}: median {row['median_s'] * 1e6:.1f} us/token "
                  f"(p10 {row['p10_s'] * 1e6:.1f}, p90 {row['p90_s'] * 1e6:.1f}), x LSTMCell {row['vs_lstm']:.2f}",
                  flush=True)
    write(rows, device, args, load_before)


def write(rows, device, args, load):
    meta = machine()
    meta.update(device=device, n_qubits=args.n_qubits, input_size=args.input_size, hidden_size=args.hidden_size,
                rounds=args.rounds, calls=args.calls, warmup=args.warmup, quick=args.quick,
                load_average=load, command="python benchmarks/cell_latency.py " + shlex.join(sys.argv[1:]))
    q = next(r for r in rows if r["model"] == "QLAMCell")
    lstm_row = next(r for r in rows if r["model"] == "nn.LSTMCell")
    load_line = (f"Load average when it started: {load[0]:.2f} on {os.cpu_count()} cores" if load else "")
    lines = [
        f"# Per-token latency: qlam.QLAMCell vs nn.LSTMCell ({device})",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads" + (f", {meta['gpu']}" if "gpu" in meta else "")
        + f"; torch {meta['torch']}. Command: `{meta['command']}`. Float32, no grad, one token per call with the "
        f"state carried; medians of {args.rounds} x {args.calls} calls per cell after {args.warmup} warm-up calls, "
        "the two cells timed in alternating rounds. `x LSTMCell` = median / nn.LSTMCell's median at the same batch.",
        f"QLAMCell({args.input_size}, {args.hidden_size}), the layer's defaults (n = {args.n_qubits}, 4 heads, "
        f"depth 2, rzz, fixed step, 4 measurements): {q['params']} parameters; nn.LSTMCell({args.input_size}, "
        f"{lstm_row['hidden_size']}): {lstm_row['params']} parameters (the hidden size closest in parameters).",
    ]
    if load_line:
        lines.append(load_line + (" (other jobs were sharing the cores: absolute times are inflated and noisy; "
                                  "the ratio is the figure to read)" if load[0] > 0.5 else "") + ".")
    if args.note:
        lines.append(args.note)
    lines += [
        "",
        "| batch | cell | hidden | parameters | median / token | p10 | p90 | x LSTMCell |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['B']} | {r['model']} | {r['hidden_size']} | {r['params']} | {r['median_s'] * 1e6:.1f} us "
                     f"| {r['p10_s'] * 1e6:.1f} us | {r['p90_s'] * 1e6:.1f} us | {r['vs_lstm']:.2f} |")
    name = f"cell_latency_{device}" + ("_quick" if args.quick else "")
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
