"""The QLAM classifier: residual pre-norm blocks whose sequence mixer is a ``qlam.QLAM`` layer."""
from __future__ import annotations

from torch import Tensor, nn

from ..layer import QLAM
from .common import ResidualBlock, SequenceClassifier


class QLAMMixer(nn.Module):
    """(B, T, d) -> (B, T, d) through one QLAM layer (batch_first, the fused kernel where it runs)."""

    def __init__(self, d_model: int, opts):
        super().__init__()
        self.qlam = QLAM(d_model, d_model, batch_first=True, n_qubits=opts.n_qubits, n_heads=opts.n_heads,
                         depth=opts.depth, entangler=opts.entangler, n_measurements=opts.n_measurements,
                         pair_features=opts.pair_features, backend=opts.backend,
                         checkpoint_every=opts.checkpoint_every)

    def forward(self, x: Tensor) -> Tensor:
        return self.qlam(x)[0]


def build_qlam(cfg, in_channels: int, n_classes: int, seq_len: int) -> SequenceClassifier:
    blocks = [ResidualBlock(QLAMMixer(cfg.d_model, cfg.qlam), cfg.d_model, cfg.ff_mult, cfg.dropout)
              for _ in range(cfg.n_layers)]
    return SequenceClassifier(in_channels, cfg.d_model, blocks, n_classes, cfg.pooling)
