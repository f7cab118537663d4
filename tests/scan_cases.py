"""Random inputs for the scan op and helpers to compare it with the reference."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

import qlam
from qlam import reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda")) else [])


@dataclasses.dataclass
class Case:
    B: int = 2
    T: int = 5
    H: int = 2
    L: int = 2
    n: int = 3
    entangler: str = "cnot"
    pair_features: bool = False
    with_init: bool = True
    with_lengths: bool = True
    noncontiguous: bool = False

    def __str__(self) -> str:
        flags = [f"{k}={v}" for k, v in dataclasses.asdict(self).items()]
        return ",".join(flags)


def random_state(B: int, H: int, n: int, dtype=torch.complex128, device="cpu", generator=None) -> torch.Tensor:
    z = torch.randn(B, H, 2**n, dtype=dtype, device=device, generator=generator)
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)


def _strided(x: torch.Tensor) -> torch.Tensor:
    """The same values as a non-contiguous view: every other element of a wider tensor."""
    wide = torch.empty(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    wide[..., ::2] = x
    view = wide[..., ::2]
    assert not view.is_contiguous() or x.numel() <= 1
    return view


def make_inputs(case: Case, dtype=torch.float64, device="cpu", seed=0, requires_grad=False):
    """Returns the op's arguments as a dict (angles, ent_angles, init_state, lengths, entangler, pair_features)."""
    g = torch.Generator().manual_seed(seed)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    angles = (torch.rand(case.B, case.T, case.H, case.L, case.n, 3, generator=g, dtype=torch.float64) * 6.4 - 3.2)
    ent = None
    if case.entangler == "rzz":
        ent = torch.rand(case.B, case.T, case.H, case.L, reference.num_pairs(case.n), generator=g,
                         dtype=torch.float64) * 6.4 - 3.2
    init = random_state(case.B, case.H, case.n, generator=g) if case.with_init else None
    lengths = None
    if case.with_lengths:
        lengths = torch.randint(0, case.T + 1, (case.B,), generator=g)
        lengths[0] = case.T  # keep one full-length sequence
    def prep(t, dt):
        if t is None:
            return None
        t = t.to(device=device, dtype=dt)
        if case.noncontiguous:
            t = _strided(t)
        return t.requires_grad_(requires_grad) if t.is_floating_point() or t.is_complex() else t
    return dict(
        angles=prep(angles, dtype),
        ent_angles=prep(ent, dtype),
        init_state=prep(init, cdtype),
        lengths=None if lengths is None else lengths.to(device),
        entangler=case.entangler,
        pair_features=case.pair_features,
    )


def differentiable(args: dict) -> list:
    return [args[k] for k in ("angles", "ent_angles", "init_state") if args[k] is not None and args[k].requires_grad]


def value_and_grads(fn, args: dict, seed=1):
    """Runs fn(**args) and returns (features, final_state, grads of a random linear loss)."""
    features, final = fn(**args)
    g = torch.Generator().manual_seed(seed)
    gf = torch.randn(features.shape, generator=g, dtype=torch.float64).to(features)
    gs = torch.randn(final.shape, generator=g, dtype=torch.complex128).to(final)
    loss = (features * gf).sum() + (final.conj() * gs).real.sum()
    inputs = differentiable(args)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True) if inputs else ()
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]
    return features, final, grads


def assert_close_results(got, want, atol, rtol=0.0):
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
    assert len(got[2]) == len(want[2])
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
