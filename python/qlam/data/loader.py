"""A batch loader over in-memory uint8 sequences: one gather and one normalisation per batch.

The data sit on the training device; an epoch's order is a permutation drawn from
``seed`` and the epoch number alone, so a resumed run sees the same batches. Under
DistributedDataParallel every rank walks the same global batches and takes
``batch[rank::world]``.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import torch
from torch import Tensor


class BatchLoader:
    def __init__(self, x: Tensor, y: Tensor, mean: Tensor, std: Tensor, batch_size: int, *, shuffle: bool,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1, device="cpu"):
        if shuffle and batch_size % world:
            raise ValueError(f"train.batch_size={batch_size} (the global batch) must be divisible by the "
                             f"number of processes ({world})")
        self.x, self.y = x.to(device), y.to(device)
        scale = 255.0 * std
        self.mean, self.scale = (255.0 * mean).to(device), scale.to(device)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]

    def order(self, epoch: int) -> Tensor:
        n = self.x.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Tuple[Tensor, Tensor]]:
        """Yields this rank's (x float (b, T, C), y) for global batches start, start+1, ..."""
        order = self.order(epoch).to(self.x.device)
        for i in range(start, len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size][self.rank::self.world]
            x = self.x.index_select(0, idx).float().sub_(self.mean).div_(self.scale)
            yield x, self.y.index_select(0, idx)
