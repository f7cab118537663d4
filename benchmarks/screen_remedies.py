"""Screening of the QLAM remedies (issue 16) on a task: one training run per named set of overrides.

    python benchmarks/screen_remedies.py configs/smnist/cpu.yaml --common train.epochs=4 task.test_subset=2000 \\
        --run "base=" --run "selective-rzz=model.qlam.step_size=selective model.qlam.entangler=rzz" \\
        [--records results/qlam-remedies/screening.jsonl] [--runs-dir runs/remedies]

Each run is ``python -m qlam.train CONFIG COMMON... RUN...`` in this process (one thread, one run at a
time); its results, validation curve and wall time are appended to the records (JSON lines), and
``screening.md`` beside them is rewritten from all the records (``--table-only`` just rewrites it).
Run folders (checkpoints) go under ``--runs-dir`` (git-ignored), never beside the records.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HEADER = """# QLAM remedies: screening (issue 16)

Written by `benchmarks/screen_remedies.py` from `screening.jsonl` (one line per run). Every run: one
CPU thread (`train.num_threads=1`), seed 0, on a shared 2-core machine (wall times are noisy: other
jobs ran beside them). `test` is on the first `test_count` test images; `val` curve = validation
accuracy after each epoch. Command of a row: `python -m qlam.train CONFIG OVERRIDES`.

"""


def render(records, path: Path) -> None:
    lines = [HEADER]
    groups = {}
    for r in records:
        groups.setdefault(r.get("group", ""), []).append(r)
    for group, rows in groups.items():
        if group:
            lines.append(f"## {group}\n")
        lines.append("| run | overrides (beyond the config) | params | test acc | best val (epoch) | val per epoch | "
                     "train time | wall |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            curve = " ".join(f"{v * 100:.1f}" for v in r["val_curve"])
            shown = " ".join(f"`{o}`" for o in r["overrides"] if not o.startswith("train.num_threads"))
            lines.append(
                f"| {r['name']} | `{r['config']}` {shown} | {r['params']:,} | "
                f"**{r['test_acc'] * 100:.2f} %** ({r['test_count']}) | {r['best_val_acc'] * 100:.1f} % "
                f"({r['best_epoch']}) | {curve} | {r['train_time_s'] / 60:.1f} min | {r['wall_s'] / 60:.1f} min |")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?")
    p.add_argument("--common", nargs="*", default=[], help="overrides of every run")
    p.add_argument("--run", action="append", default=[], help="NAME=OVERRIDE OVERRIDE ...")
    p.add_argument("--group", default="", help="a heading for these rows in the table")
    p.add_argument("--records", default="results/qlam-remedies/screening.jsonl")
    p.add_argument("--runs-dir", default="runs/remedies")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--import-run", action="append", default=[],
                   help="NAME=RUN_DIR: record a run made by `python -m qlam.train` (its config.yaml, results.json)")
    args = p.parse_args(argv)
    records_path = Path(args.records)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    for spec in args.import_run:
        import yaml
        name, _, run_dir = spec.partition("=")
        run_dir = Path(run_dir)
        res = json.loads((run_dir / "results.json").read_text())
        curve = [json.loads(line)["val_acc"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                 if line.strip()]
        rec = {"name": name, "group": args.group, "config": args.config, "overrides": args.common,
               "command": f"python -m qlam.train {args.config} {' '.join(args.common)}",
               "params": res["params"], "test_acc": res["test_acc"], "test_loss": res["test_loss"],
               "test_count": res["test_count"], "best_val_acc": res["best_val_acc"], "best_epoch": res["best_epoch"],
               "val_curve": curve, "train_time_s": res["train_time_s"], "wall_s": res["wall_time_s"],
               "run_dir": str(run_dir), "config_used": yaml.safe_load((run_dir / "config.yaml").read_text())["model"]}
        with records_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
    if not args.table_only:
        from qlam.train import train
        from qlam.train.config import load_config
        for spec in args.run:
            name, _, rest = spec.partition("=")
            overrides = [*args.common, *rest.split(), "train.num_threads=1", f"output.dir={args.runs_dir}",
                         f"output.name={name}", "output.progress=false"]
            cfg = load_config(args.config, overrides)
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            res = train(cfg, force=True)
            wall = time.perf_counter() - t0
            run_dir = cfg.run_dir()
            curve = [json.loads(line)["val_acc"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                     if line.strip()]
            shown = [o for o in overrides if not o.startswith(("output.", "train.num_threads"))]
            rec = {"name": name, "group": args.group, "config": args.config, "overrides": shown,
                   "command": f"python -m qlam.train {args.config} {' '.join(overrides)}",
                   "params": res["params"], "test_acc": res["test_acc"], "test_loss": res["test_loss"],
                   "test_count": res["test_count"], "best_val_acc": res["best_val_acc"],
                   "best_epoch": res["best_epoch"], "val_curve": curve, "train_time_s": res["train_time_s"],
                   "wall_s": wall, "run_dir": str(run_dir)}
            with records_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{name}: test {res['test_acc']:.4f}, val curve {curve}, {wall / 60:.1f} min", flush=True)
            records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
            render(records, records_path.with_suffix(".md"))
    records = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    render(records, records_path.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
