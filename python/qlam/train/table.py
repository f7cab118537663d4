"""The results table: mean ± std test accuracy over seeds, next to the published figures (docs/design.md §5)."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

TASK_COLUMNS = ("smnist", "psmnist", "sfmnist", "scifar10", "scifar10_gray")
TASK_TITLES = {"smnist": "sMNIST", "psmnist": "psMNIST", "sfmnist": "sFashion-MNIST", "scifar10": "sCIFAR-10 (RGB)",
               "scifar10_gray": "sCIFAR-10 (gray)"}
# Published test accuracies (%), docs/design.md §5; None = not reported.
PUBLISHED = {
    "QLAM, as published (arXiv 2605.13833)": {"smnist": 92.6, "sfmnist": 81.4, "scifar10": 53.6},
    "Transformer, same paper": {"smnist": 91.3, "sfmnist": 80.2, "scifar10": 53.0},
    "SSM, same paper": {"smnist": 91.2, "sfmnist": 79.6, "scifar10": 51.8},
    "LSTM (S4 paper, Table 6)": {"smnist": 98.9, "psmnist": 95.11, "scifar10": 63.01},
    "Transformer (S4 paper, Table 6)": {"smnist": 98.9, "psmnist": 97.9, "scifar10": 62.2},
    "S4 (Gu et al. 2022)": {"smnist": 99.63, "psmnist": 98.70, "scifar10": 91.13},
}


def collect(folder) -> List[dict]:
    """Every results.json below ``folder``, with the run folder's config name as ``label`` if present."""
    out = []
    for path in sorted(Path(folder).rglob("results.json")):
        row = json.loads(path.read_text())
        row["run_dir"] = str(path.parent)
        out.append(row)
    return out


def accuracy_stats(rows: List[dict]) -> dict:
    """Test accuracy in % over runs: {mean, std (0 for one run), n}."""
    accs = [100.0 * r["test_acc"] for r in rows]
    return {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "n": len(accs)}


def summarise(results: List[dict]) -> Dict[str, Dict[str, dict]]:
    """label -> task -> {mean, std, n, params, train_time_s} with accuracies in %."""
    groups = defaultdict(list)
    for r in results:
        groups[(r.get("label") or r["model"], r["task"])].append(r)
    table: Dict[str, Dict[str, dict]] = defaultdict(dict)
    for (label, task), rows in groups.items():
        table[label][task] = {**accuracy_stats(rows), "params": rows[0]["params"],
                              "train_time_s": statistics.fmean(r["train_time_s"] for r in rows),
                              "train_images": rows[0].get("train_images"), "hardware": rows[0].get("hardware")}
    return table


def markdown(results: List[dict]) -> str:
    ours = summarise(results)
    tasks = [t for t in TASK_COLUMNS if any(t in row for row in ours.values())] or list(TASK_COLUMNS[:4])
    head = "| model | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |\n|" + " --- |" * (len(tasks) + 1) + "\n"
    lines = []
    for label, row in sorted(ours.items()):
        cells = []
        for t in tasks:
            c = row.get(t)
            cells.append("not run" if c is None else
                         f"{c['mean']:.2f} ± {c['std']:.2f} (n={c['n']}, {c['params'] / 1e3:.0f}k params, "
                         f"{c['train_images']} train images, {c['train_time_s'] / 60:.1f} min)")
        lines.append(f"| ours: {label} | " + " | ".join(cells) + " |")
    for label, row in PUBLISHED.items():
        lines.append(f"| {label} | " + " | ".join("—" if row.get(t) is None else f"{row[t]:.2f}" for t in tasks) + " |")
    hardware = sorted({c["hardware"] for row in ours.values() for c in row.values() if c.get("hardware")})
    note = f"\nOurs: test accuracy %, mean ± std over seeds; hardware: {', '.join(hardware)}.\n" if hardware else "\n"
    return head + "\n".join(lines) + "\n" + note


def plot(results: List[dict], path) -> None:
    """Bar chart: our mean ± std test accuracy per task and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = summarise(results)
    tasks = [t for t in TASK_COLUMNS if any(t in row for row in ours.values())]
    labels = sorted(ours)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.5))
    for i, label in enumerate(labels):
        xs = [j + i * width for j, t in enumerate(tasks) if t in ours[label]]
        ys = [ours[label][t]["mean"] for t in tasks if t in ours[label]]
        es = [ours[label][t]["std"] for t in tasks if t in ours[label]]
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=label)
    ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(tasks))])
    ax.set_xticklabels([TASK_TITLES[t] for t in tasks])
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
