"""qlam.models: sequence classifiers built from a ``ModelConfig`` (qlam.train.config).

``build_model(cfg.model, in_channels, n_classes, seq_len)``; ``count_parameters(model)``.
"""
from __future__ import annotations

from torch import nn

from .lstm import build_lstm
from .qlam_classifier import build_qlam
from .ssm import build_ssm
from .transformer import build_transformer

BUILDERS = {"qlam": build_qlam, "lstm": build_lstm, "transformer": build_transformer, "ssm": build_ssm}


def build_model(cfg, in_channels: int, n_classes: int, seq_len: int) -> nn.Module:
    if cfg.name not in BUILDERS:
        raise ValueError(f"model.name: unknown model {cfg.name!r}; allowed: {sorted(BUILDERS)}")
    return BUILDERS[cfg.name](cfg, in_channels, n_classes, seq_len)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (a complex parameter counts as two real ones)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BUILDERS", "build_model", "count_parameters"]
