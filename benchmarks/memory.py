"""Peak memory of one training step against sequence length: QLAM, LSTM, Transformer (dense, sparse variants).

    python benchmarks/memory.py [--device cpu|cuda] [--quick] [--cap-gib 8] [--timeout 400]
                                [--recompute-chunk 1024] [--models a,b] [--lengths 1024,4096] [--tag TAG]

The models are classical.py's parameter-matched one-block classifiers (1 input
feature, batch 1 by default); T = 1k, 4k, 16k, 64k. "qlam-recompute" is the
same QLAM model with `model.qlam.recompute_chunk` set: the block runs in chunks
of that many tokens and recomputes each in the backward. "transformer-sparse_rank1"
and "transformer-topk" are the Transformer block with the sparse attention
variants (k = 32, classical.py's ATTENTION_K): their score pass is chunked and
what they keep for the backward is O(T k) per head (dense attention keeps what
scaled_dot_product_attention's backend keeps; the rows show both). Each point runs in a fresh
subprocess: model, input and optimizer are built, a 16-token training step
warms up (lazily loaded libraries, thread pools, AdamW's state), then one
training step (forward, cross-entropy, backward, AdamW step) at length T runs
and its peak memory above what the process held just before it is reported.

Two peaks on CPU. Tensors: the step is run a second time under torch.profiler
with profile_memory, and the highest running sum of its allocation and free
events is the peak of live tensor memory, the CPU counterpart of CUDA's
max_memory_allocated (frees of blocks allocated before the profiler started are
not reported, so it can only overstate). RSS: the step's peak is the process's
peak RSS (resource.getrusage ru_maxrss) minus its RSS just before the step.
ru_maxrss is a high-water mark over the process's life, so when the step stays
below an earlier peak (importing torch) it cannot see the step; then a thread
sampling /proc/self/statm every 1 ms during the step gives the peak instead
(the row says which). The child caps its address space (RLIMIT_AS = what it has
mapped before the step + --cap-gib) so a point that needs more fails with an
out-of-memory error instead of exhausting the machine; a point past --timeout
is killed. CUDA: max_memory_allocated minus memory_allocated before the step.

RSS counts what glibc's malloc keeps after a free as well as live tensors. By
default glibc raises its mmap threshold after large frees, so later large
tensors come from a heap it does not give back, and the RSS peak then grows
with the number of allocations a step makes, not with what is live at once
(measured: the chunked QLAM step read 38/79/246 MiB at T = 4k/16k/64k this way,
16/17/21 MiB with the threshold fixed, while its live tensors stayed at 11-12
MiB). So the children run with MALLOC_MMAP_THRESHOLD_=65536 (large blocks
mmapped and returned when freed), for every model alike; `--allocator
glibc-default` measures the default instead.

Also reported: the bytes of the tensors that must scale with T whatever the
model: the input (B, T, 1), the block's output (B, T, d_model) and, for QLAM,
the scan's angles and features; "QLAM is flat apart from inputs and outputs"
means its peak minus these stays about constant.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import machine, write_results  # noqa: E402

LENGTHS = (1024, 4096, 16384, 65536)
MODELS = ("qlam", "qlam-recompute", "lstm", "transformer", "transformer-sparse_rank1", "transformer-topk")
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * PAGE


def child(args) -> None:
    """One point: prints a JSON line with the step's peak memory."""
    import torch
    from torch import nn

    if args.threads:
        torch.set_num_threads(args.threads)

    from classical import N_CLASSES, config
    from qlam.models import build_model

    device, B, T, name = args.device, args.batch, args.child_T, args.child_model
    torch.manual_seed(0)
    base, _, variant = name.partition("-")
    cfg = config(base, args.child_d, args.n_qubits, attention=(variant or "dense") if base == "transformer" else "dense")
    if name == "qlam-recompute":
        cfg.qlam.recompute_chunk = args.recompute_chunk
    model = build_model(cfg, 1, N_CLASSES, T).to(device).train()
    x = torch.randn(B, T, 1, device=device)
    y = torch.randint(0, N_CLASSES, (B,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    # a 16-token step first: libraries, thread pools and the optimizer state load then, not in the measured step
    loss_fn(model(x[:, :16]), y).backward()
    optimizer.step()
    gc.collect()
    result = {}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        cap = int(args.cap_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + cap, resource.RLIM_INFINITY))
        before = rss_bytes()
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        sampled, stop = [before], threading.Event()

        def sample():
            while not stop.is_set():
                sampled[0] = max(sampled[0], rss_bytes())
                time.sleep(0.001)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    t0 = time.perf_counter()
    try:
        train_step(model, optimizer, loss_fn, x, y)
    except (MemoryError, RuntimeError) as error:  # the cap (CPU) or the GPU's memory
        if device != "cuda":
            stop.set()
        if isinstance(error, MemoryError) or "memory" in str(error).lower():
            print(json.dumps({"status": "out of memory", "error": f"{type(error).__name__}: {str(error)[:300]}"}))
            return
        raise
    if device == "cuda":
        torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    if device == "cuda":
        result.update(peak_bytes=torch.cuda.max_memory_allocated() - before, method="cuda max_memory_allocated")
        result["tensor_peak_bytes"] = result["peak_bytes"]
    else:
        stop.set()
        sampler.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > maxrss_before:
            result.update(peak_bytes=maxrss - before, method="ru_maxrss")
        else:
            result.update(peak_bytes=sampled[0] - before, method="sampled RSS (ru_maxrss set before the step)")
        result["tensor_peak_bytes"] = tensor_peak_bytes(lambda: train_step(model, optimizer, loss_fn, x, y))
    result.update(status="ok", step_s=step_s, before_bytes=before)
    print(json.dumps(result))


def train_step(model, optimizer, loss_fn, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    optimizer.step()


def tensor_peak_bytes(step) -> int:
    """CPU: the peak of live tensor memory during ``step()`` above the level before it.

    The profiler records every allocation and free of ATen's CPU allocator in order;
    the highest running sum is what max_memory_allocated reports on CUDA. Unlike RSS it
    does not see what malloc keeps after a free (nor memory that libraries allocate
    outside ATen's allocator).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    deltas = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    level = peak = 0
    for _, nbytes in deltas:
        level += nbytes
        peak = max(peak, level)
    return peak


def io_bytes(name: str, B: int, T: int, d: int, n: int, H: int = 4, L: int = 2) -> dict:
    # with recompute_chunk the block's output exists one chunk at a time: only the input counts
    io = {"input_bytes": 4 * B * T, "block_output_bytes": 0 if name == "qlam-recompute" else 4 * B * T * d}
    if name == "qlam":
        io["scan_io_bytes"] = 4 * B * T * H * (L * n * 3 + 3 * n)  # angles in, features out
    return io


def run_point(name, d, T, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--device", args.device, "--batch", str(args.batch),
           "--n-qubits", str(args.n_qubits), "--threads", str(args.threads or 0), "--cap-gib", str(args.cap_gib), "--recompute-chunk", str(args.recompute_chunk), "--child-model", name,
           "--child-T", str(T), "--child-d", str(d)]
    env = dict(os.environ)
    if args.allocator == "returning":
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out (> {args.timeout:.0f} s)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        oom = "memory" in tail.lower() or done.returncode in (-9, 137)
        return {"status": "out of memory" if oom else "failed", "error": f"exit {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, name in enumerate(MODELS):
        pts = [r for r in rows if r["model"] == name and r["status"] == "ok"]
        if pts:
            ax.plot([r["T"] for r in pts], [r["tensor_peak_bytes"] / 2**20 for r in pts], "o-", color=f"C{i}",
                    label=f"{name} (d={pts[0]['d_model']}): tensors")
            if any(r["peak_bytes"] != r["tensor_peak_bytes"] for r in pts):
                ax.plot([r["T"] for r in pts], [r["peak_bytes"] / 2**20 for r in pts], "--", color=f"C{i}",
                        alpha=0.5, lw=1, label=f"{name}: RSS")
        failed = [r for r in rows if r["model"] == name and r["status"] != "ok"]
        for r in failed:
            ax.annotate(r["status"].split(" (")[0], (r["T"], ax.get_ylim()[1] if pts else 1), fontsize=7,
                        color=f"C{i}", rotation=90, va="top")
    io = [r for r in rows if r["model"] == "qlam"]
    if io:
        ax.plot([r["T"] for r in io], [(r["input_bytes"] + r["block_output_bytes"] + r["scan_io_bytes"]) / 2**20
                                       for r in io], "k:", label="QLAM input + block output + scan I/O")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("training-step peak above the level before it (MiB)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="T = 256, 1024 (a smoke test)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 avoids stalls when other jobs share the cores")
    parser.add_argument("--n-qubits", type=int, default=6)
    parser.add_argument("--cap-gib", type=float, default=8.0, help="address-space cap per point (CPU)")
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds per point (CPU runs the step twice)")
    parser.add_argument("--allocator", default="returning", choices=["returning", "glibc-default"],
                        help="CPU: glibc malloc returning large blocks when freed (default), or glibc's default")
    parser.add_argument("--recompute-chunk", type=int, default=1024, help="qlam-recompute's chunk (tokens)")
    parser.add_argument("--tag", default="", help="results go to memory_<device>_<tag>.* (for a subset of models/lengths)")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="comma-separated sequence lengths")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-T", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-d", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_model:
        child(args)
        return
    from classical import matched_models

    lengths = (256, 1024) if args.quick else tuple(int(t) for t in args.lengths.split(","))
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; allowed: {', '.join(MODELS)}")
    widths = {name: (d, params) for name, (_, params, d) in matched_models(1, 1024, args.n_qubits).items()}
    widths["qlam-recompute"] = widths["qlam"]
    for variant in ("sparse_rank1", "topk"):  # the attention variants have the dense Transformer's width and parameters
        widths[f"transformer-{variant}"] = widths["transformer"]
    rows = []
    for T in lengths:
        for name in models:
            d, params = widths[name]
            print(f"[T={T}] {name} ...", flush=True)
            row = dict(model=name, T=T, B=args.batch, d_model=d, params=params, **run_point(name, d, T, args),
                       **io_bytes(name, args.batch, T, d, args.n_qubits))
            print("  ", row, flush=True)
            rows.append(row)
    write(rows, args)


def write(rows, args):
    meta = machine()
    meta.update(threads=args.threads or "torch default", device=args.device, quick=args.quick, cap_gib=args.cap_gib, timeout_s=args.timeout, allocator=args.allocator, recompute_chunk=args.recompute_chunk,
                command="python benchmarks/memory.py " + " ".join(sys.argv[1:]))
    mib = 2**20
    lines = [
        f"# Training-step peak memory vs sequence length ({args.device})",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads; torch {meta['torch']}. "
        f"Command: `{meta['command']}`. Batch {args.batch}, float32, one block per model "
        f"(parameter-matched; QLAM n = {args.n_qubits}, 4 heads, depth 2). Peak = the step's peak above the "
        "process's memory just before it (fresh process per point; see the script's docstring for the method).",
        ("CPU allocator: glibc with `MALLOC_MMAP_THRESHOLD_=65536`, so malloc gives large freed blocks back (see the script's docstring). "
         if args.allocator == "returning" else "CPU allocator: glibc's defaults (RSS includes the heap it keeps). ")
        + f"qlam-recompute: the same QLAM model with `model.qlam.recompute_chunk={args.recompute_chunk}`.",
        "I/O = input + block output (+ for QLAM the scan's angles and features): tensors that scale with T "
        "whatever the model (for qlam-recompute the input only: the rest exists one chunk at a time).",
        "Tensors = the peak of live ATen tensor memory (CPU: from the profiler's allocation events in a repeat "
        "of the step; CUDA: max_memory_allocated); RSS = the process's resident memory (CPU).",
        "",
        "| T | model | parameters | tensors (MiB) | I/O (MiB) | tensors - I/O (MiB) | RSS (MiB) | step time | RSS measured by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        io = (r["input_bytes"] + r["block_output_bytes"] + r.get("scan_io_bytes", 0)) / mib
        if r["status"] == "ok":
            tensors = r["tensor_peak_bytes"] / mib
            lines.append(f"| {r['T']} | {r['model']} | {r['params']} | {tensors:.1f} | {io:.1f} | {tensors - io:.1f} "
                         f"| {r['peak_bytes'] / mib:.1f} | {r['step_s']:.2f} s | {r['method']} |")
        else:
            lines.append(f"| {r['T']} | {r['model']} | {r['params']} | {r['status']} | {io:.1f} | | | | "
                         f"{r.get('error', '')} |")
    name = (f"memory_{args.device}" + ("_quick" if args.quick else "")
            + ("_glibc_default" if args.allocator == "glibc-default" and args.device == "cpu" else "")
            + (f"_{args.tag}" if args.tag else ""))
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(folder, exist_ok=True)
    png = os.path.join(folder, f"{name}.png")
    plot(rows, png, f"training step, batch {args.batch}, {meta['cpu']}")
    lines += ["", f"![memory vs T]({name}.png)"]
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths, png)


if __name__ == "__main__":
    main()
