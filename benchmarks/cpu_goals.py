"""Issue 13's three CPU goals, each measured side by side in one run.

    python benchmarks/cpu_goals.py [--threads N] [--rounds R] [--quick] [--note TEXT]

1. Training step of the QLAM classifier against the LSTM classifier at equal parameters
   (benchmarks/classical.py's one-block models: QLAM n = 6, 4 heads, depth 2, d_model 128), at the
   sMNIST (T = 784, 1 channel) and sCIFAR-10 (T = 1024, 3 channels) shapes, batch 16 and 64.
   Goal: QLAM / LSTM <= 1.
2. One state (B = 1, H = 1, T = 256, n = 8, L = 2, cnot), forward+backward of qlam.ops.scan
   against qlam.reference.scan on the same inputs. Goal: >= 100x.
3. Training tokens/s of the model of configs/smnist/cpu.yaml (batch 32, T = 784; forward,
   cross-entropy, backward, AdamW step, no data loading). Goal: >= 2x the ~115k tokens/s of
   the issue's measurement.

The two sides of each comparison are timed in alternating rounds (so a slow spell of a shared
machine hits both), and each side's figure is its median over the rounds' times. Writes
benchmarks/results/cpu_goals_cpu.json and .md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qlam  # noqa: E402
from qlam.allocator import keep_freed_memory  # noqa: E402
from qlam import reference  # noqa: E402
from classical import matched_models, train_step  # noqa: E402
from timing import machine, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEP_SHAPES = {"sMNIST": (784, 1), "sCIFAR-10": (1024, 3)}
ISSUE_TOKENS_PER_S = 115_000  # configs/smnist/cpu.yaml as measured when issue 13 was filed


def alternate(fns: dict, rounds: int, calls: int = 1) -> dict:
    """name -> the median over `rounds` of one round's mean time per call, rounds interleaved."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(3):  # warm-up: first calls, the heap's growth, the allocator's state
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t0) / calls)
    return {name: statistics.median(ts) for name, ts in times.items()}


def training_steps(batches, rounds, quick):
    rows = []
    for shape, (T, C) in STEP_SHAPES.items():
        T = 64 if quick else T
        models = matched_models(C, T)
        for B in batches:
            torch.manual_seed(0)
            x, y = torch.randn(B, T, C), torch.randint(0, 10, (B,))
            steps = {name: train_step(models[name][0], x, y) for name in ("qlam", "lstm")}
            t = alternate(steps, rounds)
            print(f"[{shape} B={B}] qlam {t['qlam'] * 1e3:.1f} ms, lstm {t['lstm'] * 1e3:.1f} ms", flush=True)
            rows.append(dict(goal="training step", shape=shape, B=B, T=T,
                             qlam_params=models["qlam"][1], lstm_params=models["lstm"][1],
                             qlam_s=t["qlam"], lstm_s=t["lstm"], ratio=t["qlam"] / t["lstm"]))
    return rows


def one_state(rounds, quick):
    B, T, H, L, n = 1, (32 if quick else 256), 1, 2, 8
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(B, T, H, L, n, 3, generator=g) * 6.4 - 3.2

    def run(scan):
        def step():
            a = angles.clone().requires_grad_()
            features, final = scan(a, None, None, None, "cnot", False)
            (features.sum() + final.real.sum()).backward()
        return step

    t = alternate({"kernel": run(qlam.ops.scan), "reference": run(reference.scan)}, rounds)
    print(f"[one state] kernel {t['kernel'] * 1e3:.2f} ms, reference {t['reference'] * 1e3:.1f} ms", flush=True)
    return [dict(goal="one state fwd+bwd", B=B, T=T, H=H, L=L, n=n, kernel_s=t["kernel"],
                 reference_s=t["reference"], ratio=t["reference"] / t["kernel"])]


def cpu_config_tokens(rounds, quick):
    from qlam.models import build_model
    from qlam.train.config import load_config
    cfg = load_config(ROOT / "configs" / "smnist" / "cpu.yaml")
    B, T = cfg.train.batch_size, (64 if quick else 784)
    torch.manual_seed(0)
    model = build_model(cfg.model, 1, 10, T)
    x, y = torch.randn(B, T, 1), torch.randint(0, 10, (B,))
    t = alternate({"step": train_step(model, x, y)}, rounds)["step"]
    print(f"[configs/smnist/cpu.yaml] {t * 1e3:.1f} ms per step, {B * T / t:,.0f} tokens/s", flush=True)
    return [dict(goal="cpu.yaml tokens/s", B=B, T=T, step_s=t, tokens_per_s=B * T / t,
                 ratio=B * T / t / ISSUE_TOKENS_PER_S)]


def markdown(rows, meta, note):
    steps = [r for r in rows if r["goal"] == "training step"]
    state = next(r for r in rows if r["goal"] == "one state fwd+bwd")
    tokens = next(r for r in rows if r["goal"] == "cpu.yaml tokens/s")
    lines = [
        "# Issue 13's CPU goals (cpu)", "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads; torch {meta['torch']}. "
        f"Command: `{meta['command']}`. Float32; the two sides of each comparison timed in alternating "
        "rounds, medians over the rounds; freed memory kept for reuse (qlam.allocator, as qlam-train "
        f"does): {meta['keep_freed_memory']}." + (f" {note}" if note else ""), "",
        "Training step (forward, cross-entropy, backward, AdamW) of one-block classifiers at equal parameters "
        "(benchmarks/classical.py's models). Goal: QLAM / LSTM <= 1.", "",
        "| shape | B | QLAM (params) | step | LSTM (params) | step | QLAM / LSTM |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in steps:
        lines.append(f"| {r['shape']} | {r['B']} | {r['qlam_params']} | {r['qlam_s'] * 1e3:.1f} ms | "
                     f"{r['lstm_params']} | {r['lstm_s'] * 1e3:.1f} ms | {r['ratio']:.2f} |")
    lines += [
        "", f"One state (B = 1, H = 1, T = {state['T']}, n = 8, L = 2, cnot), forward+backward: kernel "
        f"{state['kernel_s'] * 1e3:.2f} ms, reference {state['reference_s'] * 1e3:.1f} ms: "
        f"**{state['ratio']:.0f}x** (goal >= 100x).", "",
        f"configs/smnist/cpu.yaml, training step at batch {tokens['B']}, T = {tokens['T']} (no data loading): "
        f"{tokens['step_s'] * 1e3:.1f} ms, **{tokens['tokens_per_s']:,.0f} tokens/s**, "
        f"{tokens['ratio']:.2f}x the issue's ~115k (goal >= 2x).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--quick", action="store_true", help="short sequences, 2 rounds (a smoke test)")
    parser.add_argument("--note", default="", help="a sentence for the markdown (e.g. what else ran)")
    parser.add_argument("--no-keep-freed-memory", dest="keep_freed_memory", action="store_false",
                        help="leave glibc's malloc as it is (qlam-train keeps freed memory by default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # As qlam-train does (train.keep_freed_memory): both sides of every comparison run with it.
    kept = keep_freed_memory() if args.keep_freed_memory else False
    rounds = 2 if args.quick else args.rounds
    rows = (training_steps(args.batches, rounds, args.quick) + one_state(rounds, args.quick)
            + cpu_config_tokens(rounds, args.quick))
    meta = machine()
    meta.update(command="python benchmarks/cpu_goals.py " + " ".join(sys.argv[1:]), quick=args.quick,
                keep_freed_memory=kept)
    name = "cpu_goals_cpu_quick" if args.quick else "cpu_goals_cpu"
    paths = write_results(name, rows, markdown(rows, meta, args.note), meta)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
