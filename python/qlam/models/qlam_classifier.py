"""The QLAM classifier: residual pre-norm blocks whose sequence mixer is a ``qlam.QLAM`` layer."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layer import QLAM
from .common import ResidualBlock, SequenceClassifier


class QLAMMixer(nn.Module):
    """(B, T, d), state -> (B, T, d), state through one QLAM layer (batch_first, the fused kernel where it runs)."""

    def __init__(self, d_model: int, opts):
        super().__init__()
        self.qlam = QLAM(d_model, d_model, batch_first=True, n_qubits=opts.n_qubits, n_heads=opts.n_heads,
                         depth=opts.depth, entangler=opts.entangler, n_measurements=opts.n_measurements,
                         pair_features=opts.pair_features, backend=opts.backend,
                         checkpoint_every=opts.checkpoint_every, angle_init=opts.angle_init,
                         angle_bias=opts.angle_bias, angle_map=opts.angle_map, step_size=opts.step_size,
                         dt_min=opts.dt_min, dt_max=opts.dt_max,
                         reset_state_every_token=opts.reset_state_every_token)
        if opts.angle_lr is not None:
            # Its own optimizer group (qlam.train.optim.param_groups reads _optim): the circuit's learning rate.
            for cell in self.qlam.cells:
                for p in cell.angles.parameters():
                    p._optim = {"lr": opts.angle_lr, "weight_decay": 0.0}

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        return self.qlam(x, state)


class QLAMBlock(ResidualBlock):
    """A pre-norm residual block around a QLAM mixer; ``step`` also takes and returns the quantum state."""

    def __init__(self, d_model: int, opts, ff_mult: int, dropout: float):
        super().__init__(QLAMMixer(d_model, opts), d_model, ff_mult, dropout)

    def step(self, x: Tensor, state: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        y, state = self.mixer(self.norm1(x), state)
        return self.feed_forward(x + self.drop(y)), state

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None)[0]


class QLAMClassifier(SequenceClassifier):
    """The sequence classifier with QLAM blocks, optionally trained chunk by chunk.

    With ``recompute_chunk`` set, a training forward runs the whole model over chunks of that
    many tokens, carrying each block's quantum state from chunk to chunk, and keeps of a chunk
    only its input slice, its starting states and its pooled sum: the backward recomputes each
    chunk (torch.utils.checkpoint) before differentiating it. Everything but the scans is per
    token and a scan needs only its starting state, so this is the one-pass computation (the mean
    is summed chunk by chunk), while the memory a training step holds no longer grows with T
    beyond the input itself, for about one more forward. Dropout masks are replayed exactly
    (checkpoint restores the RNG state).
    """

    def __init__(self, in_channels: int, d_model: int, blocks, n_classes: int, pooling: str,
                 recompute_chunk: Optional[int]):
        super().__init__(in_channels, d_model, blocks, n_classes, pooling)
        self.recompute_chunk = recompute_chunk

    def _chunk(self, x: Tensor, *states: Optional[Tensor]):
        h, new_states = self.encoder(x), []
        for block, state in zip(self.blocks, states):
            h, state = block.step(h, state)
            new_states.append(state)
        h = self.norm(h)
        summary = h.sum(dim=1) if self.pooling == "mean" else h[:, -1]
        return (summary, *new_states)

    def forward(self, x: Tensor) -> Tensor:
        chunk = self.recompute_chunk
        if chunk is None or not torch.is_grad_enabled() or x.shape[1] <= chunk:
            return super().forward(x)
        pooled, states = None, [None] * len(self.blocks)
        for piece in x.split(chunk, dim=1):
            summary, *states = checkpoint(self._chunk, piece, *states, use_reentrant=False)
            pooled = summary if pooled is None or self.pooling == "last" else pooled + summary
        return self.head(pooled / x.shape[1] if self.pooling == "mean" else pooled)


def build_qlam(cfg, in_channels: int, n_classes: int, seq_len: int) -> SequenceClassifier:
    blocks = [QLAMBlock(cfg.d_model, cfg.qlam, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_layers)]
    return QLAMClassifier(in_channels, cfg.d_model, blocks, n_classes, cfg.pooling, cfg.qlam.recompute_chunk)
