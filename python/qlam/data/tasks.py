"""The sequence classification tasks: images read once, turned into (N, T, C) uint8 sequences.

smnist / psmnist / sfmnist: 784 tokens of 1 pixel (psmnist with the permutation
``torch.manual_seed(permutation_seed); torch.randperm(784)``, as in coRNN and
LipschitzRNN, seed 12008 by default); scifar10: 1024 tokens of 3 channels;
scifar10_gray: 1024 tokens of 1 channel (ITU-R 601 luma, as torchvision's grayscale).
Pixels are normalised per channel with the training split's mean and std, per batch.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from .sources import load_cifar10, load_idx_dataset

TASKS = {
    "smnist": ("MNIST", False, False),  # source, permuted, grayscale
    "psmnist": ("MNIST", True, False),
    "sfmnist": ("FashionMNIST", False, False),
    "scifar10": ("CIFAR10", False, False),
    "scifar10_gray": ("CIFAR10", False, True),
}
# Image side and channels of each source.
SOURCE_SHAPES = {"MNIST": (28, 1), "FashionMNIST": (28, 1), "CIFAR10": (32, 3)}


@dataclass
class TaskData:
    name: str
    train_x: Tensor  # uint8 (N, T, C)
    train_y: Tensor  # int64 (N,)
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    mean: Tensor  # float32 (C,), in [0, 1] pixel units
    std: Tensor
    permutation: Optional[Tensor]
    n_classes: int = 10

    @property
    def seq_len(self) -> int:
        return self.train_x.shape[1]

    @property
    def channels(self) -> int:
        return self.train_x.shape[2]


@functools.lru_cache(maxsize=4)
def _load_images(source: str, data_root: Optional[str], download: bool, verify_md5: bool):
    """Read once per process: later runs (sweeps, notebooks) reuse the tensors in memory."""
    if source == "CIFAR10":
        return load_cifar10(data_root, download, verify_md5)
    return load_idx_dataset(source, data_root, download)


def _downsample(images: Tensor, factor: int) -> Tensor:
    if factor == 1:
        return images
    x = images.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.avg_pool2d(x, factor)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _to_sequences(images: Tensor, grayscale: bool) -> Tensor:
    if grayscale and images.shape[-1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114])
        images = (images.float() @ weights).round().clamp(0, 255).to(torch.uint8).unsqueeze(-1)
    n, h, w, c = images.shape
    return images.reshape(n, h * w, c).contiguous()


def permutation(seq_len: int, seed: int) -> Tensor:
    """The psMNIST permutation: torch.manual_seed(seed); torch.randperm(seq_len), without touching global RNG."""
    return torch.randperm(seq_len, generator=torch.Generator().manual_seed(seed))


def _task_entry(name: str):
    """(source, permuted, grayscale) of a task name."""
    if name not in TASKS:
        raise ValueError(f"task.name: unknown task {name!r}; allowed: {sorted(TASKS)}")
    return TASKS[name]


def task_shape(cfg) -> Tuple[int, int, int]:
    """(seq_len, channels, n_classes) of the task a ``TaskConfig`` describes, known before any data is read."""
    source, _, grayscale = _task_entry(cfg.name)
    side, channels = SOURCE_SHAPES[source]
    side //= cfg.downsample  # avg_pool2d with kernel = stride = factor
    return side * side, 1 if grayscale else channels, 10


def build_task(cfg) -> TaskData:
    """Builds the task from a ``TaskConfig`` (qlam.train.config): split, subset, permutation, statistics."""
    source, permuted, grayscale = _task_entry(cfg.name)
    (train_img, train_y), (test_img, test_y) = _load_images(source, cfg.data_root, cfg.download, cfg.verify_md5)
    train_x = _to_sequences(_downsample(train_img, cfg.downsample), grayscale)
    test_x = _to_sequences(_downsample(test_img, cfg.downsample), grayscale)
    perm = None
    if permuted:
        perm = permutation(train_x.shape[1], cfg.permutation_seed)
        train_x, test_x = train_x[:, perm], test_x[:, perm]
    n = train_x.shape[0]
    if cfg.val_size >= n:
        raise ValueError(f"task.val_size={cfg.val_size} must be smaller than the {n} training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed))
    val_idx, train_idx = order[: cfg.val_size], order[cfg.val_size:]
    if cfg.train_subset is not None:
        train_idx = train_idx[: cfg.train_subset]
    if cfg.val_subset is not None:
        val_idx = val_idx[: cfg.val_subset]
    if cfg.test_subset is not None:
        test_x, test_y = test_x[: cfg.test_subset], test_y[: cfg.test_subset]
    tx = train_x[train_idx]
    pixels = tx.reshape(-1, tx.shape[-1]).double() / 255.0
    mean, std = pixels.mean(0).float(), pixels.std(0).float().clamp_min(1e-3)
    return TaskData(cfg.name, tx, train_y[train_idx], train_x[val_idx], train_y[val_idx], test_x.contiguous(),
                    test_y, mean, std, perm)
