"""What one run of the CPU study costs per model, measured side by side on this machine.

    python benchmarks/study_cost.py [--device cpu|cuda] [--threads 1] [--repeats 3]

The study's runs (configs/study/<task>/<model>.yaml, results/cpu-study/) did not all run on the same
hardware (the baselines' cells on a lent GPU, QLAM's on this CPU), so their wall times are not
comparable. This benchmark times every study model on one machine in one run, at the study's shapes
(sMNIST-shaped tasks: T = 784 x 1, sCIFAR-10: T = 1024 x 3) and its batch (32; evaluation 500):
a training step (forward, cross-entropy, backward, AdamW step) and an evaluation forward (no grad),
on random data (speed does not depend on the pixels). From them, the predicted time of one study run
on this machine = steps x step + (validation images x epochs + 10,000 test images) x evaluation time
per image, and the ratio to QLAM's. One CPU thread by default: the study runs 2 at once on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qlam.models import build_model, count_parameters  # noqa: E402
from qlam.train.config import load_config  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("qlam", "lstm", "ssm", "transformer", "sparse_rank1", "qsat")
SHAPES = {"smnist": (784, 1), "scifar10": (1024, 3)}  # psmnist and sfmnist have sMNIST's shape and models
TEST_IMAGES = 10_000
EVAL_TIMING_BATCH = 100  # images per timed evaluation forward (the cost per image does not depend on it)


def measure(task: str, name: str, device: str, repeats: int) -> dict:
    cfg = load_config(ROOT / "configs" / "study" / task / f"{name}.yaml")
    T, C = SHAPES[task]
    torch.manual_seed(0)
    model = build_model(cfg.model, C, 10, T).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    B = cfg.train.batch_size
    x, y = torch.randn(B, T, C, device=device), torch.randint(0, 10, (B,), device=device)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step_s = median_time(step, device, warmup=1, repeats=repeats)
    model.eval()
    xe = torch.randn(EVAL_TIMING_BATCH, T, C, device=device)
    with torch.no_grad():
        eval_s = median_time(lambda: model(xe), device, warmup=1, repeats=repeats) / EVAL_TIMING_BATCH
    steps = cfg.task.train_subset // B * cfg.train.epochs
    eval_images = cfg.task.val_subset * cfg.train.epochs + TEST_IMAGES
    return {"task": task, "model": name, "params": count_parameters(model), "T": T, "batch": B,
            "train_step_s": step_s, "eval_s_per_image": eval_s, "steps": steps, "eval_images": eval_images,
            "predicted_run_s": steps * step_s + eval_images * eval_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as each study run has)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for task in SHAPES:
        for name in MODELS:
            print(f"[{task}] {name} ...", flush=True)
            rows.append(measure(task, name, args.device, args.repeats))
        qlam = next(r for r in rows if r["task"] == task and r["model"] == "qlam")
        for r in rows:
            if r["task"] == task:
                r["run_vs_qlam"] = r["predicted_run_s"] / qlam["predicted_run_s"]
                r["step_vs_qlam"] = r["train_step_s"] / qlam["train_step_s"]
    write(rows, args)


def write(rows, args):
    meta = machine()
    meta.update(device=args.device, threads=args.threads, command="python benchmarks/study_cost.py "
                + " ".join(sys.argv[1:]))
    lines = [
        f"# The CPU study's cost per run, every model on one machine ({args.device})",
        "",
        f"Machine: {meta['cpu']}, {args.threads} thread(s)" + (f", {meta['gpu']}" if "gpu" in meta else "")
        + f"; torch {meta['torch']}. Command: `{meta['command']}`. Float32, medians after warm-up, random data.",
        "Models: configs/study/<task>/<model>.yaml. Step = training step at batch 32; evaluation = forward per "
        "image; predicted run = steps x step + (validation x epochs + 10,000 test) images x evaluation. "
        "`x QLAM` = ratio to QLAM's in the same run.",
        "",
        "| task shape | model | parameters | training step | x QLAM | evaluation per image | predicted run | x QLAM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['task']} (T = {r['T']}) | {r['model']} | {r['params']:,} | {r['train_step_s'] * 1e3:.0f} ms "
                     f"| {r['step_vs_qlam']:.2f} | {r['eval_s_per_image'] * 1e3:.1f} ms "
                     f"| {r['predicted_run_s'] / 60:.1f} min | {r['run_vs_qlam']:.2f} |")
    per_seed = {t: sum(r["predicted_run_s"] for r in rows if r["task"] == t) for t in SHAPES}
    lines += ["", f"Predicted time of one seed of all six models: sMNIST-shaped task {per_seed['smnist'] / 60:.0f} min, "
              f"sCIFAR-10 {per_seed['scifar10'] / 60:.0f} min (one thread)."]
    paths = write_results(f"study_cost_{args.device}", rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
