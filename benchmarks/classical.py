"""QLAM against classical sequence layers at equal parameter counts: forward and training step.

    python benchmarks/classical.py [--device cpu|cuda] [--quick] [--batch B]

One block of each of the project's classifiers (python/qlam/models, dropout 0,
mean pooling, 10 classes): a QLAM block (d_model 128, n = 6 qubits, 4 heads,
depth 2, the layer's defaults (rzz, fixed step), gated feed-forward), an nn.LSTM
layer, a pre-norm Transformer encoder block (scaled_dot_product_attention)
and an S4D block (the SSM baseline). Each baseline's width is the one whose
parameter count comes closest to the QLAM model's (counts are in the table).
Beside the dense Transformer block: the same block with the attention variants
of python/qlam/models/transformer.py (model.transformer.attention), rows
`transformer_sparse_rank1` (sparse-plus-rank-one, top-k rule) and
`transformer_topk` (QSAT reading), k = 32, the same width and parameters:
classical simulations of those schemes, whose cost is measured here (a chunked
dense score pass and torch.topk); no quantum speed-up is claimed or measured.
Shapes: sMNIST (T = 784, 1 feature) and sCIFAR (T = 1024, 3 features).
Timed: forward (no grad) and a training step (forward, cross-entropy,
backward, AdamW step), medians after a warm-up, all models in the same run.
On CPU the default batch is 16 so the whole script takes a few minutes.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qlam.info import cuda_program  # noqa: E402
from qlam.models import build_model, count_parameters  # noqa: E402
from qlam.train.config import ModelConfig, QLAMOptions, TransformerOptions  # noqa: E402
from timing import machine, median_time, write_results  # noqa: E402

SHAPES = {"sMNIST": dict(T=784, C=1), "sCIFAR": dict(T=1024, C=3)}
MODELS = ("qlam", "lstm", "transformer", "ssm")
ATTENTION_VARIANTS = ("sparse_rank1", "topk")  # rows transformer_<variant>, at the dense Transformer's width
ATTENTION_K = 32
N_CLASSES = 10


def config(name: str, d_model: int, n_qubits: int, attention: str = "dense") -> ModelConfig:
    return ModelConfig(name=name, d_model=d_model, n_layers=1, dropout=0.0, pooling="mean",
                       qlam=QLAMOptions(n_qubits=n_qubits, n_heads=4, depth=2),
                       transformer=TransformerOptions(attention=attention, attention_k=ATTENTION_K))


def matched_models(in_channels: int, seq_len: int, n_qubits: int = 6, qlam_width: int = 128) -> dict:
    """name -> (model, parameter count, d_model): baselines sized to the QLAM model's parameter count."""
    qlam_model = build_model(config("qlam", qlam_width, n_qubits), in_channels, N_CLASSES, seq_len)
    target = count_parameters(qlam_model)
    models = {"qlam": (qlam_model, target, qlam_width)}
    for name in MODELS[1:]:
        step = 4 if name == "transformer" else 1  # attention heads (4) must divide d_model
        # the counts grow monotonically with d_model: stop once past the target
        best = None
        for d in range(step, 1024, step):
            count = count_parameters(build_model(config(name, d, n_qubits), in_channels, N_CLASSES, seq_len))
            if best is None or abs(count - target) < abs(best[1] - target):
                best = (d, count)
            if count > target:
                break
        torch.manual_seed(0)
        d = best[0]
        model = build_model(config(name, d, n_qubits), in_channels, N_CLASSES, seq_len)
        models[name] = (model, count_parameters(model), d)
        if name == "transformer":  # the attention variants add no parameters: same width
            for attention in ATTENTION_VARIANTS:
                torch.manual_seed(0)
                model = build_model(config(name, d, n_qubits, attention), in_channels, N_CLASSES, seq_len)
                models[f"transformer_{attention}"] = (model, count_parameters(model), d)
    return models


def forward(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def train_step(model, x, y):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="T = 64, batch 4 (a smoke test)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: cpu 16, cuda 64)")
    parser.add_argument("--n-qubits", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's); 1 avoids stalls when other jobs share the cores")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    B = args.batch or (4 if args.quick else (16 if device == "cpu" else 64))
    rows = []
    for shape_name, shape in SHAPES.items():
        T = 64 if args.quick else shape["T"]
        C = shape["C"]
        models = matched_models(C, T, args.n_qubits)
        torch.manual_seed(0)
        x = torch.randn(B, T, C, device=device)
        y = torch.randint(0, N_CLASSES, (B,), device=device)
        for name, (model, params, d) in models.items():
            model.to(device).train()
            print(f"[{shape_name} B={B} T={T}] {name} (d_model={d}, {params} parameters) ...", flush=True)
            row = dict(shape=shape_name, B=B, T=T, C=C, model=name, d_model=d, params=params)
            row["forward_s"] = median_time(forward(model, x), device, 1, args.repeats)
            row["train_step_s"] = median_time(train_step(model, x, y), device, 1, args.repeats)
            print(f"  forward {row['forward_s']:.4f} s, train step {row['train_step_s']:.4f} s", flush=True)
            rows.append(row)
        base = {r["model"]: r for r in rows if r["shape"] == shape_name}
        for r in base.values():
            r["train_step_vs_qlam"] = r["train_step_s"] / base["qlam"]["train_step_s"]
            r["forward_vs_qlam"] = r["forward_s"] / base["qlam"]["forward_s"]
    write(rows, device, args)


def write(rows, device, args):
    meta = machine()
    # which CUDA program ran QLAM's scan (csrc/cuda/register_launch.h): today's kernels or the register ones
    program = cuda_program() if device == "cuda" else None
    meta.update(device=device, quick=args.quick, n_qubits=args.n_qubits, cuda_program=program,
                command=("QLAM_CUDA_PROGRAM=register " if program == "register" else "")
                + "python benchmarks/classical.py " + " ".join(sys.argv[1:]))
    lines = [
        f"# QLAM vs classical sequence layers ({device})",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_threads']} threads" + (f", {meta['gpu']}" if "gpu" in meta else "")
        + f"; torch {meta['torch']}. Command: `{meta['command']}`. Float32, medians after warm-up."
        + (f" QLAM's scan: the `{program}` CUDA program." if program else ""),
        "One block of each classifier (encoder, block, norm, mean pooling, head); baselines sized to the "
        f"QLAM model's parameter count (QLAM: n = {args.n_qubits}, 4 heads, depth 2). Training step = forward, "
        "cross-entropy, backward, AdamW step. `x QLAM` = time / QLAM's time in the same run.",
        f"`transformer_sparse_rank1` / `transformer_topk`: the Transformer block with sparse-plus-rank-one / "
        f"QSAT-style top-k attention (k = {ATTENTION_K}), classical simulations (chunked dense scores + top-k); "
        "no quantum speed-up is claimed or measured.",
        "",
        "| shape | B | T | model | d_model | parameters | forward | x QLAM | training step | x QLAM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['B']} | {r['T']} | {r['model']} | {r['d_model']} | {r['params']} "
                     f"| {r['forward_s'] * 1e3:.1f} ms | {r['forward_vs_qlam']:.2f} | {r['train_step_s'] * 1e3:.1f} ms "
                     f"| {r['train_step_vs_qlam']:.2f} |")
    name = f"classical_{device}" + ("_register" if program == "register" else "") + ("_quick" if args.quick else "")
    paths = write_results(name, rows, "\n".join(lines) + "\n", meta)
    print("\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
