"""``qlam-sweep CONFIG [CONFIG ...] --seeds 0 1 2 [--out DIR] [--jobs N] [KEY=VALUE ...]``: many runs, one table.

Each config runs once per seed into ``DIR/<config folder>-<config name>/seed<k>``:
in this process one after another, or with ``--jobs N`` in up to N child processes
at once (each with ``--threads-per-job`` CPU threads, its output in ``seed<k>.log``
beside the run folder). Finished runs (with results.json) are skipped and
interrupted ones resumed, so re-running a sweep continues it.
Then ``DIR/table.md`` (mean ± std test accuracy beside the published figures)
and ``DIR/accuracy.png`` are written. ``--collect-only`` just rebuilds them.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from . import table
from .cli import USER_ERRORS
from .config import load_config
from .trainer import RunDirError, train


def pending_runs(configs: List[str], seeds: List[int], out: Path, overrides: List[str]):
    """(config, seed, run folder) of every run without results.json, seeds outermost (seed 0 of all first).
    Every config is loaded once here, so a typo fails at once, not hours into a sweep."""
    for config in configs:
        load_config(config, list(overrides))
    todo = []
    for seed in seeds:
        for config in configs:
            run_dir = out / f"{Path(config).parent.name}-{Path(config).stem}" / f"seed{seed}"
            if (run_dir / "results.json").exists():
                print(f"qlam-sweep: {run_dir} is done, skipped")
            else:
                todo.append((config, seed, run_dir))
    return todo


def run_sweep(configs: List[str], seeds: List[int], out: Path, overrides: List[str]) -> None:
    for config, seed, run_dir in pending_runs(configs, seeds, out, overrides):
        cfg = load_config(config, list(overrides) + [f"train.seed={seed}", f"output.dir={run_dir.parent}",
                                                     f"output.name={run_dir.name}"])
        print(f"qlam-sweep: {run_dir.parent.name} seed {seed} -> {run_dir}")
        train(cfg, resume=(run_dir / "last.pt").exists())


def run_parallel(configs: List[str], seeds: List[int], out: Path, overrides: List[str], jobs: int,
                 threads: int) -> List[str]:
    """Each pending run as ``python -m qlam.train.sweep CONFIG --seeds K`` in a child process, up to ``jobs`` at
    once; returns the run folders that failed (their logs say why). Ctrl-C or SIGTERM (``timeout``, a batch
    system) stops the children too: left running, they would hold the CPUs or the GPU with no one to wait for them."""
    todo = pending_runs(configs, seeds, out, overrides)
    running, failed = [], []

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while todo or running:
            while todo and len(running) < jobs:
                config, seed, run_dir = todo.pop(0)
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                log = open(run_dir.parent / f"{run_dir.name}.log", "a")
                cmd = [sys.executable, "-m", "qlam.train.sweep", config, "--seeds", str(seed), "--out", str(out),
                       "--no-table", f"train.num_threads={threads}", "output.progress=false", *overrides]
                print(f"qlam-sweep: start {run_dir.parent.name} seed {seed} ({len(todo)} waiting)", flush=True)
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), run_dir, log))
            time.sleep(0.5)
            for item in [r for r in running if r[0].poll() is not None]:
                proc, run_dir, log = item
                log.close()
                running.remove(item)
                ok = proc.returncode == 0 and (run_dir / "results.json").exists()
                print(f"qlam-sweep: {'done' if ok else 'FAILED'} {run_dir}"
                      + ("" if ok else f" (exit {proc.returncode}; see {log.name})"), flush=True)
                if not ok:
                    failed.append(str(run_dir))
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc, _, log in running:
            proc.terminate()
        for proc, _, log in running:
            proc.wait()
            log.close()
    return failed


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
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (default 1)")
    parser.add_argument("--threads-per-job", type=int, default=1, help="CPU threads of each run with --jobs > 1")
    parser.add_argument("--no-table", action="store_true", help=argparse.SUPPRESS)  # the children of --jobs
    args = parser.parse_intermixed_args(argv)
    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not args.collect_only:
            if not configs:
                parser.error("give at least one config (or --collect-only)")
            if args.jobs < 1 or args.threads_per_job < 1:
                parser.error("--jobs and --threads-per-job must be at least 1")
            if args.jobs == 1:
                run_sweep(configs, args.seeds, out, overrides)
            else:
                failed = run_parallel(configs, args.seeds, out, overrides, args.jobs, args.threads_per_job)
                if failed:
                    print(f"qlam-sweep: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
                    print(write_table(out))
                    return 1
    except USER_ERRORS + (RunDirError, ValueError) as error:
        print(f"qlam-sweep: error: {error}", file=sys.stderr)
        return 2
    if args.no_table:
        return 0
    print(write_table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
