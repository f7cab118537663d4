"""The QLAM scan in plain PyTorch complex arithmetic.

This is the specification of ``torch.ops.qlam.scan`` (docs/design.md §1-3) and the
oracle of the tests: short, readable, differentiable by autograd. It is also
the fallback where the compiled extension is missing (``qlam.QLAM`` warns
when it uses it). It keeps every intermediate state for autograd, so its
memory grows with the sequence length; the fused kernels' does not.

Conventions (docs/design.md §2): amplitude index ``i = sum_q b_q 2**q`` (qubit 0
is the least significant bit); ``Rot(phi, theta, omega) = RZ(omega) RY(theta)
RZ(phi)``; features ``<X_q>, <Y_q>, <Z_q>`` per qubit, then, with pair
features, ``<A_q B_{q+1}>`` for ``A, B`` in ``X, Y, Z`` (row-major) per chain pair.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

ENTANGLERS = ("cnot", "cz", "rzz", "none")


def num_pairs(n: int) -> int:
    """Entangled pairs per layer: a ring for n >= 3, one pair for n = 2, none for n = 1."""
    return n if n >= 3 else n - 1


def ring_pairs(n: int) -> list[tuple[int, int]]:
    """The entangler's pairs in the order they are applied: (q, q+1), then (n-1, 0)."""
    return [(p, (p + 1) % n) for p in range(num_pairs(n))]


def num_features(n: int, pair_features: bool) -> int:
    return 3 * n + (9 * (n - 1) if pair_features else 0)


def rot_matrices(angles: Tensor) -> Tensor:
    """Rot(phi, theta, omega) for angles (..., 3) -> complex (..., 2, 2)."""
    phi, theta, omega = angles.unbind(-1)
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    e_sum = torch.polar(torch.ones_like(phi), (phi + omega) / 2)  # e^{i(phi+omega)/2}
    e_diff = torch.polar(torch.ones_like(phi), (phi - omega) / 2)  # e^{i(phi-omega)/2}
    row0 = torch.stack([c * e_sum.conj(), -s * e_diff], dim=-1)
    row1 = torch.stack([s * e_diff.conj(), c * e_sum], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def _bits(n: int, device) -> Tensor:
    """bits[i, q] = bit q of basis index i, shape (2**n, n)."""
    i = torch.arange(2**n, device=device)
    return (i[:, None] >> torch.arange(n, device=device)) & 1


def apply_1q(psi: Tensor, gate: Tensor, q: int) -> Tensor:
    """Applies per-state 2x2 matrices gate (S, 2, 2) to qubit q of psi (S, 2**n)."""
    S, N = psi.shape
    view = psi.reshape(S, N // (2 << q), 2, 1 << q)  # axis 2 is bit q
    return torch.einsum("sij,sxjy->sxiy", gate, view).reshape(S, N)


def apply_cnot(psi: Tensor, control: int, target: int) -> Tensor:
    """CNOT(control -> target): flips bit `target` of the amplitudes whose bit `control` is 1."""
    i = torch.arange(psi.shape[-1], device=psi.device)
    source = torch.where((i >> control) & 1 == 1, i ^ (1 << target), i)
    return psi[:, source]


def apply_entangler(psi: Tensor, entangler: str, g: Optional[Tensor]) -> Tensor:
    """One entangler layer on psi (S, 2**n); g (S, P) are the rzz angles."""
    n = psi.shape[-1].bit_length() - 1
    if entangler == "cnot":
        for control, target in ring_pairs(n):
            psi = apply_cnot(psi, control, target)
    elif entangler == "cz":
        bits = _bits(n, psi.device)
        for a, b in ring_pairs(n):
            psi = psi * (1 - 2 * (bits[:, a] & bits[:, b])).to(psi.dtype)
    elif entangler == "rzz" and num_pairs(n) > 0:
        z = 1 - 2 * _bits(n, psi.device).to(g.dtype)  # Z eigenvalues, (N, n)
        zz = torch.stack([z[:, a] * z[:, b] for a, b in ring_pairs(n)], dim=-1)  # (N, P)
        # One phase per pair gate, multiplied: summing the angles first would lose
        # a small angle next to a huge one (1 + 1e30 == 1e30 in floating point).
        phase = g[:, None, :] * zz  # (S, N, P): g_p z_a z_b
        psi = psi * torch.polar(torch.ones_like(phase), -phase / 2).prod(dim=-1)
    return psi


_PAULI = {
    "X": [[0, 1], [1, 0]],
    "Y": [[0, -1j], [1j, 0]],
    "Z": [[1, 0], [0, -1]],
}


def features(psi: Tensor, pair_features: bool) -> Tensor:
    """Pauli expectation features of psi (S, 2**n) -> real (S, K)."""
    S, N = psi.shape
    n = N.bit_length() - 1
    out = []
    for q in range(n):
        view = psi.reshape(S, N // (2 << q), 2, 1 << q)
        a, b = view[:, :, 0], view[:, :, 1]  # amplitudes with bit q = 0 and 1
        w = (a.conj() * b).sum(dim=(1, 2))
        z = (a.abs() ** 2 - b.abs() ** 2).sum(dim=(1, 2))
        out += [2 * w.real, 2 * w.imag, z]
    if pair_features:
        paulis = [torch.tensor(_PAULI[p], dtype=psi.dtype, device=psi.device) for p in "XYZ"]
        # Local index r = b_q + 2 b_{q+1}: kron puts its first factor on the high bit.
        ops = torch.stack([torch.kron(B, A) for A in paulis for B in paulis])  # (9, 4, 4)
        for q in range(n - 1):
            view = psi.reshape(S, N // (4 << q), 4, 1 << q)
            gram = torch.einsum("sxry,sxcy->src", view.conj(), view)  # sum conj(psi_r) psi_c
            vals = torch.einsum("jrc,src->sj", ops, gram).real
            out += list(vals.unbind(-1))
    return torch.stack(out, dim=-1)


def scan(
    angles: Tensor,
    ent_angles: Optional[Tensor] = None,
    init_state: Optional[Tensor] = None,
    lengths: Optional[Tensor] = None,
    entangler: str = "cnot",
    pair_features: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Reference QLAM scan; same arguments and results as ``qlam.ops.scan``.

    Args:
        angles: real (B, T, H, L, n, 3) rotation angles (phi, theta, omega).
        ent_angles: real (B, T, H, L, P) rzz angles for entangler="rzz", else None.
        init_state: complex (B, H, 2**n) initial states, or None for |0...0>.
        lengths: int64 (B,) valid lengths; later positions leave the state
            unchanged and give zero features. None means all T.
        entangler: "cnot", "cz", "rzz" or "none".
        pair_features: also measure the 9 two-qubit Paulis of each chain pair.

    Returns:
        features (B, T, H, K) real and final_state (B, H, 2**n) complex.
    """
    if entangler not in ENTANGLERS:
        raise ValueError(f"unknown entangler {entangler!r}; expected one of {ENTANGLERS}")
    B, T, H, L, n, three = angles.shape
    if three != 3:
        raise ValueError(f"angles must have shape (B, T, H, L, n, 3), got {tuple(angles.shape)}")
    if (entangler == "rzz") != (ent_angles is not None):
        raise ValueError("ent_angles is needed with entangler='rzz' and only then")
    N, S = 2**n, B * H
    cdtype = torch.complex128 if angles.dtype == torch.float64 else torch.complex64
    if init_state is None:
        psi = torch.zeros(S, N, dtype=cdtype, device=angles.device)
        psi[:, 0] = 1
    else:
        psi = init_state.reshape(S, N)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=angles.device)
    # Which (b, h) states are still inside their sequence at each step: (T, S).
    active = (torch.arange(T, device=angles.device)[:, None] < lengths.repeat_interleave(H)[None, :])

    gates = rot_matrices(angles)  # (B, T, H, L, n, 2, 2)
    feats = []
    for t in range(T):
        new = psi
        for layer in range(L):
            gate_t = gates[:, t, :, layer].reshape(S, n, 2, 2)
            for q in range(n):
                new = apply_1q(new, gate_t[:, q], q)
            g = ent_angles[:, t, :, layer].reshape(S, num_pairs(n)) if entangler == "rzz" else None
            new = apply_entangler(new, entangler, g)
        keep = active[t][:, None]
        psi = torch.where(keep, new, psi)
        feats.append(features(psi, pair_features) * keep)
    K = num_features(n, pair_features)
    if T:
        out = torch.stack(feats, dim=1).reshape(B, H, T, K).transpose(1, 2)
    else:
        out = angles.new_zeros(B, 0, H, K)
    return out, psi.reshape(B, H, N)
