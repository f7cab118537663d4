"""Helpers for the training-system tests: tiny data sets in the real file formats, tiny configs.

MNIST-like sets are written as gzipped IDX files, CIFAR-10 as python-pickle batches,
each with an easy class-dependent pattern so a few steps of training lower the loss.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _images(n: int, size: int, channels: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    img = rng.integers(0, 40, (n, size, size, channels)).astype(np.int32)
    band = size // 10 or 1
    for i, k in enumerate(labels.tolist()):  # class k: a bright horizontal band at a class-specific height
        img[i, (k * size) // 10:(k * size) // 10 + max(band, size // 7)] += 180
    return np.clip(img, 0, 255).astype(np.uint8), labels


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_idx_dataset(folder: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """The four MNIST-format .gz files (28x28 grayscale) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = _images(n_train, 28, 1, seed)
    test_x, test_y = _images(n_test, 28, 1, seed + 1)
    for name, arr in zip(IDX, (train_x[..., 0], train_y, test_x[..., 0], test_y)):
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write(_idx_bytes(arr))
    return folder


def write_cifar_batches(root: Path, per_batch: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with 5 training batches, a test batch and batches.meta (python pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        x, y = _images(n_test if name == "test_batch" else per_batch, 32, 3, seed + i)
        data = x.transpose(0, 3, 1, 2).reshape(len(y), 3072)  # 1024 R, 1024 G, 1024 B per row
        entry = {"batch_label": name, "labels": [int(v) for v in y], "data": data,
                 "filenames": [f"{name}_{j}.png" for j in range(len(y))]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f)
    return folder


def tiny_config(data_root: Path, out_dir: Path, model: str = "qlam", task: str = "smnist", **sections) -> dict:
    """A config dict that trains in about a second: 7x7 images (49 tokens), tiny models."""
    cfg = {
        "task": {"name": task, "data_root": str(data_root), "val_size": 32, "downsample": 4, "verify_md5": False},
        "model": {"name": model, "d_model": 16, "n_layers": 1, "ff_mult": 1,
                  "qlam": {"n_qubits": 3, "n_heads": 2, "depth": 1},
                  "transformer": {"n_heads": 2}, "ssm": {"d_state": 8}},
        "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.01, "seed": 0,
                  "device": "cpu"},
        "output": {"dir": str(out_dir), "progress": False, "plots": False},
    }
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg
