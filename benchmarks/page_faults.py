"""What qlam.allocator.keep_freed_memory saves a CPU training step: minor page faults and time per step,
with the setting and without, side by side in one run.

    python benchmarks/page_faults.py [--runs 5] [--steps 12]

Each run is a fresh child process (the setting is process-wide and glibc's heap layout differs from
process to process) that trains configs/smnist/cpu.yaml's model on random data, batch 32, 392 tokens,
one thread, and counts minor page faults (getrusage ru_minflt) and wall time over the second half of its
steps. The runs alternate between the two modes; the table gives the median and the range over runs,
because a single run's count varies a lot with the heap's layout. Writes
benchmarks/results/page_faults.json and .md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, write_results  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smnist", "cpu.yaml")

# The child: argv = mode ("on" / "off"), config, steps. Prints whether the setting took, the faults and the
# seconds over the last steps // 2 steps.
CHILD = """
import resource, sys, time
import torch
from qlam.allocator import keep_freed_memory
from qlam.models import build_model
from qlam.train.config import load_config
took = keep_freed_memory() if sys.argv[1] == "on" else None
steps = int(sys.argv[3])
torch.manual_seed(0)
torch.set_num_threads(1)
model = build_model(load_config(sys.argv[2]).model, 1, 10, 392)
opt = torch.optim.AdamW(model.parameters())
x, y = torch.randn(32, 392, 1), torch.randint(0, 10, (32,))
for i in range(steps):
    if i == steps - steps // 2:
        faults, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, time.perf_counter() - t0)
"""


def run_child(mode: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, CONFIG, str(steps)], capture_output=True, text=True,
                         check=True).stdout.split()
    measured = steps // 2
    return {"mode": mode, "took": out[0], "faults_per_step": int(out[1]) / measured,
            "seconds_per_step": float(out[2]) / measured}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for mode in ("on", "off"):
        mine = [r for r in runs if r["mode"] == mode]
        faults, secs = [r["faults_per_step"] for r in mine], [r["seconds_per_step"] for r in mine]
        rows.append({"keep_freed_memory": mode == "on", "runs": len(mine),
                     "faults_per_step_median": statistics.median(faults), "faults_per_step_min": min(faults),
                     "faults_per_step_max": max(faults), "seconds_per_step_median": statistics.median(secs),
                     "seconds_per_step_min": min(secs), "seconds_per_step_max": max(secs)})
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    on, off = rows
    lines = ["# keep_freed_memory: page faults and time per CPU training step", "",
             f"`{meta['command']}`: configs/smnist/cpu.yaml's model, batch 32, 392 tokens, one thread; "
             f"{on['runs']} child processes per mode, alternating, each measured over its last steps.", "",
             "| keep_freed_memory | minor faults per step: median (range) | seconds per step: median (range) |",
             "| --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {'on' if r['keep_freed_memory'] else 'off'} | {r['faults_per_step_median']:.0f} "
                     f"({r['faults_per_step_min']:.0f}-{r['faults_per_step_max']:.0f}) "
                     f"| {r['seconds_per_step_median']:.3f} "
                     f"({r['seconds_per_step_min']:.3f}-{r['seconds_per_step_max']:.3f}) |")
    ratio = on["seconds_per_step_median"] / off["seconds_per_step_median"]
    apart = (on["seconds_per_step_max"] < off["seconds_per_step_min"]
             or off["seconds_per_step_max"] < on["seconds_per_step_min"])
    lines += ["", f"Time per step with the setting / without: {ratio:.3f} (medians); the two modes' ranges over runs "
              + ("do not overlap." if apart else "overlap: the difference is within this machine's run-to-run noise.")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="child processes per mode")
    parser.add_argument("--steps", type=int, default=12, help="training steps per child; the last half measured")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.steps < 2:
        parser.error("--runs must be >= 1 and --steps >= 2")
    if not sys.platform.startswith("linux"):
        sys.exit("page_faults.py: keep_freed_memory acts on glibc's malloc (Linux) only")
    runs = []
    for i in range(args.runs):
        for mode in ("on", "off"):
            runs.append(run_child(mode, args.steps))
            print(f"run {i + 1}/{args.runs} {mode}: {runs[-1]['faults_per_step']:.0f} faults/step, "
                  f"{runs[-1]['seconds_per_step']:.3f} s/step", flush=True)
    if any(r["took"] != "True" for r in runs if r["mode"] == "on"):
        sys.exit("page_faults.py: this C library did not take glibc's mallopt settings (not glibc?)")
    rows = summarise(runs)
    meta = machine()
    meta.update(command=" ".join(["python benchmarks/page_faults.py", *(sys.argv[1:] if argv is None else argv)]),
                runs=runs)
    paths = write_results("page_faults", rows, markdown(rows, meta), meta)
    print(markdown(rows, meta))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
