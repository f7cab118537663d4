"""What a run writes besides checkpoints: the resolved config, metrics (JSONL + CSV), results, plots."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List

import torch
import yaml


class RecordWriteError(OSError):
    """A run file (metrics, results, config) could not be written; the previous version is unchanged."""


def write_text(path: Path, text: str) -> None:
    """Atomic small-file write: a kill or a full disk leaves the old file whole, never a torn line."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as error:
        raise RecordWriteError(error.errno, f"could not write {path}: {error.strerror or error}; the previous "
                               "version, if any, is unchanged") from error
    finally:
        if tmp.exists():
            tmp.unlink()


def write_config(run_dir: Path, config: Dict[str, Any]) -> None:
    write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def write_metrics(run_dir: Path, history: List[Dict[str, Any]]) -> None:
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    if history:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        write_text(run_dir / "metrics.csv", out.getvalue())


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_results(run_dir: Path, results: Dict[str, Any]) -> None:
    write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def plot_curves(run_dir: Path, history: List[Dict[str, Any]]) -> None:
    """learning_curves.png: loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "learning_curves.png"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:  # like write_text: a kill mid-write leaves the previous picture, not a torn one
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
