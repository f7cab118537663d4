"""AdamW with parameter groups, and the warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float):
    """Matrices decay; biases, norms and embeddings of shape < 2 do not; ``p._optim`` overrides (S4D's A, dt)."""
    decay, no_decay, special = [], [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if hasattr(p, "_optim"):
            key = tuple(sorted(p._optim.items()))
            special.setdefault(key, []).append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay},
              {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    groups += [{"params": ps, **dict(key)} for key, ps in special.items()]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build(model: nn.Module, cfg, total_steps: int):
    """(optimizer, scheduler) for ``cfg`` (a TrainConfig) over ``total_steps`` optimizer steps."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay), lr=cfg.lr)
    warmup = int(round(cfg.warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup, cfg.min_lr_ratio))
    return optimizer, scheduler
