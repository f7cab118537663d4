"""Floating-point work of the scan, counted per token and head (real flops).

A complex multiply is 6 flops, a complex add 2. N = 2**n amplitudes.
- Rot gate: N/2 pairs x (4 complex mul + 2 complex add) = 14 N.
- Entangler: cnot and cz move or negate amplitudes (0 flops); rzz: 2 P N for
  the phase sum, plus one complex multiply per amplitude (6 N); its sin/cos not counted.
- Features: per qubit N/2 x (conj-multiply 6 + |a|^2 - |b|^2 5 + 3 adds) = 7 N;
  per chain pair N/4 x (4 |v|^2 (3 each) + 6 conj-multiplies (6) + 16 adds) = 16 N.
- float32 norm restoration: 4 N (sum of squares) + 2 N (scale).
Backward, per token: feature sources 16 N per qubit and 36 N per pair
(4x4 complex mat-vec per group of four: 16 mul + 12 add + 4 adds, /4 per amplitude);
per gate 44 N (two 2x2 mat-vecs 28 + four conj-multiply-accumulates 16, per pair);
rzz layer 2 x 6 N + 2 P N + 2 N (the gradient sums); norm restoration 6 N.
"""
from __future__ import annotations


def num_pairs(n: int) -> int:
    return n if n >= 3 else n - 1


def forward_flops(n: int, L: int, entangler: str = "cnot", pair_features: bool = False, float32: bool = True) -> int:
    N = 2**n
    flops = 14 * N * L * n + 7 * N * n
    if entangler == "rzz":
        flops += L * (6 * N + 2 * num_pairs(n) * N)
    if pair_features:
        flops += 16 * N * (n - 1)
    if float32:
        flops += 6 * N
    return flops


def backward_flops(n: int, L: int, entangler: str = "cnot", pair_features: bool = False, float32: bool = True) -> int:
    N = 2**n
    flops = 44 * N * L * n + 16 * N * n
    if entangler == "rzz":
        flops += L * (12 * N + 4 * num_pairs(n) * N)
    if pair_features:
        flops += 36 * N * (n - 1)
    if float32:
        flops += 6 * N
    return flops
