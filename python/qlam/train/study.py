"""The study report (issue 11): tables and figures rebuilt from a folder of run records alone.

``python -m qlam.train.study results/cpu-study`` reads every ``<task>-<config>/seed<k>/results.json``
and ``metrics.csv`` written by ``qlam-sweep configs/study/*/*.yaml --out results/cpu-study`` and writes

- ``report.md``: the accuracy table (mean ± std over seeds, parameters), the cost table (wall time per
  run, tokens/s, hardware), the published figures in a table of their own (other budgets), and the
  QLAM ablation (entangler x pair features);
- ``curves_<task>.png``: validation accuracy against training step, one seed per model, one figure per task.

The README's results section embeds ``report.md`` verbatim; ``tests/test_cpu_study.py`` rebuilds it from
the records and checks both.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from .table import PUBLISHED, TASK_TITLES, accuracy_stats, collect

TASKS = ("smnist", "psmnist", "sfmnist", "scifar10")
# config name -> row title, in the order of the tables
MODELS = {
    "qlam": "QLAM (rzz, fixed step)",
    "lstm": "LSTM",
    "ssm": "S4D",
    "transformer": "Transformer",
    "sparse_rank1": "Transformer, sparse + rank-one attention",
    "qsat": "Transformer, QSAT top-k attention",
}
# QLAM ablation: config name -> (entangler, pair features)
ABLATION = {
    "qlam": ("rzz", False), "qlam-cnot": ("cnot", False), "qlam-none": ("none (product states)", False),
    "qlam-pairs": ("rzz", True), "qlam-cnot-pairs": ("cnot", True), "qlam-none-pairs": ("none (product states)", True),
}
ABLATION_TASKS = ("smnist", "scifar10")


def _runs(folder: Path) -> Dict[tuple, List[dict]]:
    """(task, config name) -> the runs' results, each with its run folder, sorted by seed."""
    groups = defaultdict(list)
    for r in collect(folder):
        run_dir = Path(r["run_dir"])
        task, config = run_dir.parent.name.split("-", 1)
        groups[(task, config)].append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in groups.items()}


def _cell(rows: List[dict]) -> dict:
    return {**accuracy_stats(rows), "params": rows[0]["params"],
            "wall_s": statistics.fmean(r["wall_time_s"] for r in rows),
            "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in rows),
            "hardware": sorted({r.get("hardware", "?") for r in rows}), "steps": rows[0]["steps"],
            "train_images": rows[0].get("train_images")}


def summary(folder) -> Dict[tuple, dict]:
    """(task, config name) -> {mean, std, n (seeds), params, wall_s, tokens_per_s, hardware, steps}; accuracy in %."""
    return {k: _cell(v) for k, v in _runs(Path(folder)).items()}


def _acc(c: Optional[dict]) -> str:
    return "not run" if c is None else f"{c['mean']:.1f} ± {c['std']:.1f}" + ("" if c["n"] == 3 else f" (n={c['n']})")


def _short_hardware(name: str) -> str:
    return "H200" if "H200" in name else "H100" if "H100" in name else "CPU, 1 thread" if "1 threads" in name else name


def report(folder) -> str:
    s = summary(folder)
    tasks = [t for t in TASKS if any(k[0] == t for k in s)]
    budgets = {(c["train_images"], c["steps"]) for c in s.values()}
    out = []
    # each model's parameters on the first task it ran, and how far the other tasks' counts are from them
    first = {m: next(s[(t, m)]["params"] for t in tasks if (t, m) in s)
             for m in MODELS if any((t, m) in s for t in tasks)}
    spread = max((abs(c["params"] / first[m] - 1) for (t, m), c in s.items() if m in first), default=0.0)
    out.append(f"Test accuracy %, mean ± std over 3 seeds (10,000 test images; chance 10 %). Parameters: "
               f"{TASK_TITLES[tasks[0]]} (the other tasks within {100 * spread:.1f} %).\n")
    out.append("| model | parameters | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |")
    out.append("| --- | --- |" + " --- |" * len(tasks))
    for m, title in MODELS.items():
        if not any((t, m) in s for t in tasks):
            continue
        out.append(f"| {title} | {first[m]:,} | " + " | ".join(_acc(s.get((t, m))) for t in tasks) + " |")
    out.append("")
    out.append("Cost per run (mean over seeds): wall time (training, validation each epoch, the final test) and "
               "training tokens/s, on the hardware named.\n")
    out.append("| model | hardware | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |")
    out.append("| --- | --- |" + " --- |" * len(tasks))
    for m, title in MODELS.items():
        cells = [s.get((t, m)) for t in tasks]
        if not any(cells):
            continue
        hardware = sorted({_short_hardware(h) for c in cells if c for h in c["hardware"]})
        out.append(f"| {title} | {', '.join(hardware)} | " + " | ".join(
            "not run" if c is None else f"{c['wall_s'] / 60:.1f} min, {c['tokens_per_s'] / 1e3:.0f}k tok/s" for c in cells)
            + " |")
    out.append("")
    out.append("QLAM ablation, test accuracy %, mean ± std over 3 seeds (the pair-feature variants at d_model 18 to "
               "keep ~31k parameters):\n")
    out.append("| entangler | pair features | parameters | " + " | ".join(TASK_TITLES[t] for t in ABLATION_TASKS) + " |")
    out.append("| --- | --- | --- |" + " --- |" * len(ABLATION_TASKS))
    for m, (ent, pairs) in ABLATION.items():
        cells = [s.get((t, m)) for t in ABLATION_TASKS]
        if not any(cells):
            continue
        params = next(c["params"] for c in cells if c)
        out.append(f"| {ent} | {'yes' if pairs else 'no'} | {params:,} | " + " | ".join(_acc(c) for c in cells) + " |")
    out.append("")
    out.append("Published test accuracy % (full training sets, tens to hundreds of epochs: other budgets, not "
               "comparable with the rows above):\n")
    out.append("| model | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |")
    out.append("|" + " --- |" * (len(tasks) + 1))
    for label, row in PUBLISHED.items():
        out.append(f"| {label} | " + " | ".join("—" if row.get(t) is None else f"{row[t]:.2f}" for t in tasks) + " |")
    out.append("")
    if len(budgets) == 1:
        (images, steps), = budgets
        out.append(f"Budget of every run: {images:,} training images, {steps} steps of batch 32.")
    return "\n".join(out) + "\n"


def _curve(run_dir: Path):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [100.0 * float(r["val_acc"]) for r in rows]


def plot_curves(folder, seed: int = 0) -> List[Path]:
    """curves_<task>.png in ``folder``: validation accuracy vs step of seed ``seed`` of every model of the task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    runs = _runs(folder)
    written = []
    for task in TASKS:
        names = [m for m in list(MODELS) + [a for a in ABLATION if a not in MODELS] if (task, m) in runs]
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(9.0, 4.0))
        for m in names:
            run = next((r for r in runs[(task, m)] if r["seed"] == seed), None)
            if run is None:
                continue
            steps, acc = _curve(Path(run["run_dir"]))
            ablation = m not in MODELS
            ax.plot(steps, acc, marker="o", ms=3, ls=":" if ablation else "-", lw=1 if ablation else 1.6,
                    label=MODELS.get(m, "QLAM ablation: " + m.split("-", 1)[-1]))
        ax.axhline(10, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("training step (batch 32)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"{TASK_TITLES[task]}: seed {seed} of each model")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: curves overlap
        fig.tight_layout()
        path = folder / f"curves_{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qlam.train.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="results/cpu-study", help="the sweep's --out folder")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not any(folder.glob("*/seed*/results.json")):
        print(f"qlam study: no run records (<task>-<config>/seed<k>/results.json) in {folder}", file=sys.stderr)
        return 2
    text = report(folder)
    (folder / "report.md").write_text(text)
    written = [] if args.no_plots else plot_curves(folder)
    print(text)
    print("wrote " + " ".join(str(p) for p in [folder / "report.md", *written]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
