"""``qlam-sweep CONFIG [CONFIG ...] --seeds 0 1 2 [--out DIR] [KEY=VALUE ...]``: many runs, one table.

Each config runs once per seed (in this process, one after another) into
``DIR/<config folder>-<config name>/seed<k>``; finished runs (with results.json)
are skipped and interrupted ones resumed, so re-running a sweep continues it.
Then ``DIR/table.md`` (mean ± std test accuracy beside the published figures)
and ``DIR/accuracy.png`` are written. ``--collect-only`` just rebuilds them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from . import table
from .cli import USER_ERRORS
from .config import load_config
from .trainer import RunDirError, train


def run_sweep(configs: List[str], seeds: List[int], out: Path, overrides: List[str]) -> None:
    for config in configs:
        label = f"{Path(config).parent.name}-{Path(config).stem}"
        for seed in seeds:
            run_dir = out / label / f"seed{seed}"
            if (run_dir / "results.json").exists():
                print(f"qlam-sweep: {run_dir} is done, skipped")
                continue
            cfg = load_config(config, list(overrides) + [f"train.seed={seed}", f"output.dir={out / label}",
                                                           f"output.name=seed{seed}"])
            print(f"qlam-sweep: {label} seed {seed} -> {run_dir}")
            train(cfg, resume=(run_dir / "last.pt").exists())


def write_table(out: Path) -> str:
    results = table.collect(out)
    for r in results:  # label each run by its config: "<task>-<config name>"
        r["label"] = Path(r["run_dir"]).parent.name.split("-", 1)[-1] if Path(r["run_dir"]).parent != out else r["model"]
    text = table.markdown(results)
    (out / "table.md").write_text(text)
    if results:
        table.plot(results, out / "accuracy.png")
    return text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qlam-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", help="YAML configs, then optional KEY=VALUE overrides for all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/sweep")
    parser.add_argument("--collect-only", action="store_true", help="only rebuild table.md and accuracy.png")
    args = parser.parse_intermixed_args(argv)
    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not args.collect_only:
            if not configs:
                parser.error("give at least one config (or --collect-only)")
            run_sweep(configs, args.seeds, out, overrides)
    except USER_ERRORS + (RunDirError, ValueError) as error:
        print(f"qlam-sweep: error: {error}", file=sys.stderr)
        return 2
    print(write_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
