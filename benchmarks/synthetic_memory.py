"""Synthetic memory tasks (qlam.synthetic): QLAM variants against LSTM, Transformer and SSM, about equal size.

    python benchmarks/synthetic_memory.py [--tasks recall:100:blank adding:100 ...] [--models qlam lstm ...]
        [--steps 600] [--out results/qlam-remedies/synthetic]

Every model is a ``qlam.models`` classifier with pooling ``last`` (the answer must be in the state at
the end of the sequence), one block, its width chosen so that the parameter counts are close to the
default QLAM's (printed). Writes OUT.json (learning curves), OUT.md (a table) and OUT.png (curves).
One thread, one run at a time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from qlam.models import build_model, count_parameters
from timing import ext  # benchmarks/ is sys.path[0] when run as a script
from qlam.synthetic import make_task, train_synthetic
from qlam.train.config import config_from_dict

QLAM = {"n_qubits": 4, "n_heads": 4, "depth": 1, "entangler": "cnot", "n_measurements": 4, "step_size": "none"}  # the paper's map
# name -> (model section of the config, without d_model), widths tried to match the parameter count
MODELS = {
    "qlam": {"name": "qlam", "qlam": QLAM},
    "qlam-selective-rzz": {"name": "qlam", "qlam": {**QLAM, "step_size": "selective", "entangler": "rzz"}},
    "qlam-selective-rzz-dt0.01-1": {"name": "qlam", "qlam": {**QLAM, "step_size": "selective", "entangler": "rzz",
                                                            "dt_min": 0.01, "dt_max": 1.0}},
    "qlam-fixed-rzz": {"name": "qlam", "qlam": {**QLAM, "step_size": "fixed", "entangler": "rzz"}},
    "qlam-init0.05": {"name": "qlam", "qlam": {**QLAM, "angle_init": 0.05}},
    "lstm": {"name": "lstm"},
    "transformer": {"name": "transformer", "transformer": {"n_heads": 2}},
    "ssm": {"name": "ssm", "ssm": {"d_state": 16}},
}
DEFAULT_MODELS = ["qlam", "qlam-selective-rzz", "qlam-fixed-rzz", "lstm", "transformer", "ssm"]
DEFAULT_TASKS = ["recall:100:blank", "recall:100", "adding:100", "parity:32"]


def build(name: str, task, d_model: int, n_layers: int):
    spec = json.loads(json.dumps(MODELS[name]))
    cfg = config_from_dict({"model": {**spec, "d_model": d_model, "n_layers": n_layers, "pooling": "last",
                                      "ff_mult": 2}}).model
    return build_model(cfg, task.in_channels, task.n_outputs, task.seq_len)


def matched_width(name: str, task, target: int, n_layers: int) -> int:
    """The d_model whose parameter count is closest to target (even widths; attention heads must divide)."""
    best = None
    for d in range(4, 129, 2):
        n = count_parameters(build(name, task, d, n_layers))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (d, n)
    return best[0]


def plot(results, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in results:
            if r["task"] == task:
                ax.plot([c["step"] for c in r["curve"]], [c["eval_metric"] for c in r["curve"]],
                        label=f"{r['model']} ({r['params']:,})", lw=1)
        r0 = next(r for r in results if r["task"] == task)
        ax.axhline(r0["chance"], color="k", ls="--", lw=0.7)
        ax.set(title=task, xlabel="step", ylabel="eval " + r0["metric"])
        if r0["metric"] == "mse":
            ax.set_yscale("log")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results) -> str:
    lines = ["| task | model | d_model | params | final | best | chance / mean-predictor | steps | time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        fmt = (lambda v: f"{v:.4f}") if r["metric"] == "mse" else (lambda v: f"{v * 100:.1f} %")
        lines.append(f"| {r['task']} | {r['model']} | {r['d_model']} | {r['params']:,} | **{fmt(r['final'])}** | "
                     f"{fmt(r['best'])} | {fmt(r['chance'])} | {r['steps']} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(MODELS))
    p.add_argument("--n-layers", type=int, default=1)
    p.add_argument("--qlam-d-model", type=int, default=16, help="width of the QLAM models; the others match it")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=300, help="seconds per run at most")
    p.add_argument("--out", default="results/qlam-remedies/synthetic")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.tasks:
        task = make_task(spec)
        target = count_parameters(build("qlam", task, args.qlam_d_model, args.n_layers))
        for name in args.models:
            if MODELS[name]["name"] == "qlam":
                d = args.qlam_d_model
            else:
                d = matched_width(name, task, target, args.n_layers)
            torch.manual_seed(args.seed)
            model = build(name, task, d, args.n_layers)
            t0 = time.perf_counter()
            r = train_synthetic(model, task, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                seed=args.seed, time_limit_s=args.time_limit)
            r.update(model=name, d_model=d, params=count_parameters(model), wall_s=time.perf_counter() - t0)
            results.append(r)
            print(f"{task.name:24s} {name:28s} d={d:3d} params={r['params']:6,d} final {r['metric']} "
                  f"{r['final']:.4f} best {r['best']:.4f} ({r['seconds']:.0f} s)", flush=True)
            meta = {"command": "python benchmarks/synthetic_memory.py " + " ".join(argv or __import__("sys").argv[1:]),
                    "args": vars(args), "results": results}
            ext(out, ".json").write_text(json.dumps(meta, indent=1))
            ext(out, ".md").write_text(
                f"# Synthetic memory tasks\n\n`{meta['command']}` (one thread, seed {args.seed}, batch "
                f"{args.batch_size}, lr {args.lr}, {args.steps} steps, pooling last, {args.n_layers} block(s)).\n\n"
                + table(results) + "\n")
            plot(results, ext(out, ".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
