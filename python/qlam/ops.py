"""Typed Python entry points of the fused operators (torch.ops.qlam.*)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _extension


def scan(
    angles: Tensor,
    ent_angles: Optional[Tensor] = None,
    init_state: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    entangler: str = "cnot",
    pair_features: bool = False,
    *,
    checkpoint_every: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    """The fused QLAM scan over a whole sequence (docs/design.md §3).

    Args:
        angles: real (B, T, H, L, n, 3) rotation angles (phi, theta, omega),
            float32 or float64; the state is complex64 or complex128 to match.
        ent_angles: real (B, T, H, L, P) angles of the rzz entangler (P pairs:
            n for n >= 3, else n - 1); None for the other entanglers.
        init_state: complex (B, H, 2**n) initial states; None for |0...0>.
        lengths: int64 (B,) valid lengths in [0, T] on the device of angles;
            later positions keep the state and give zero features.
        entangler: "cnot", "cz", "rzz" or "none".
        pair_features: also measure <A_q B_{q+1}> for the chain pairs.
        checkpoint_every: keep every k-th state for the backward, which then
            uncomputes at most k steps from a stored state (bounds float32 drift
            on very long sequences at the cost of T/k stored states).

    Returns:
        features: real (B, T, H, K), K = 3n (+ 9(n-1) with pair features).
        final_state: complex (B, H, 2**n), the state after lengths[b] tokens.

    Differentiable in angles, ent_angles and init_state; the backward
    recomputes states by uncomputation, so memory does not grow with T.
    """
    _extension.require()
    if checkpoint_every:
        return torch.ops.qlam.scan_checkpointed(
            angles, ent_angles, init_state, lengths, entangler, pair_features, int(checkpoint_every)
        )
    return torch.ops.qlam.scan(angles, ent_angles, init_state, lengths, entangler, pair_features)


def readout(query: Tensor, features: Tensor) -> Tensor:
    """The query-weighted readings ``y[..., j] = sum_k query[..., j, k] * features[..., k]``.

    The same numbers as ``torch.einsum("...jk,...k->...j", query, features)`` as one op with its
    own backward (on the CPU one pass over ``query`` instead of batched matmuls over tiny blocks).

    Args:
        query: real (..., J, K), J observables chosen per head, K features each.
        features: real (..., K) with the same leading dimensions and dtype as ``query``.

    Returns:
        real (..., J). Differentiable in both inputs (no double backward).
    """
    _extension.require()
    return torch.ops.qlam.readout(query, features)


def gated_gelu(x: Tensor) -> Tensor:
    """The gated feed-forward's middle, ``GELU(x[..., :h]) * x[..., h:]`` (exact, erf-based GELU).

    The same numbers as ``a, v = x.chunk(2, -1); torch.nn.functional.gelu(a) * v`` as one op with
    its own backward: on the CPU one pass over ``x`` per direction, and the backward writes the
    (..., 2h) gradient directly instead of concatenating the halves' gradients. float32 on the
    CPU uses the kernel's own vectorised erf and exp (within a few ulp of the composite); other
    dtypes and devices run the composite.

    Args:
        x: real (..., 2h), h >= 1: the gate half, then the value half.

    Returns:
        real (..., h). Differentiable (no double backward).
    """
    _extension.require()
    return torch.ops.qlam.gated_gelu(x)
