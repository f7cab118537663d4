"""The Transformer baseline: pre-norm encoder blocks with ``scaled_dot_product_attention``."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .common import ResidualBlock, SequenceClassifier


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class PositionalEncoding(nn.Module):
    """Adds sinusoidal (fixed) or learned position vectors."""

    def __init__(self, d_model: int, seq_len: int, kind: str):
        super().__init__()
        if kind == "learned":
            self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        else:
            position = torch.arange(seq_len).unsqueeze(1)
            freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(seq_len, d_model)
            pe[:, 0::2] = torch.sin(position * freq)
            pe[:, 1::2] = torch.cos(position * freq[: d_model // 2])
            self.register_buffer("pos", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pos[: x.shape[1]]


def build_transformer(cfg, in_channels: int, n_classes: int, seq_len: int) -> SequenceClassifier:
    opts = cfg.transformer
    blocks = [ResidualBlock(SelfAttention(cfg.d_model, opts.n_heads, cfg.dropout), cfg.d_model, cfg.ff_mult,
                            cfg.dropout) for _ in range(cfg.n_layers)]
    pre = PositionalEncoding(cfg.d_model, seq_len, opts.positional)
    return SequenceClassifier(in_channels, cfg.d_model, blocks, n_classes, cfg.pooling, pre=pre)
