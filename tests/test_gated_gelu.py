"""qlam.ops.gated_gelu (the gated feed-forward's GELU(a) * v as one op): agreement with the
chunk/gelu/product it replaces, its float32 erf and exp against exact values, gradients, the op's
registration (opcheck), special values, bad input, and the models' feed-forward using it."""
import math

import pytest
import torch

import qlam
from qlam.models.common import GatedFeedForward
from scan_cases import DEVICES


def _composite(x):
    gate, value = x.chunk(2, dim=-1)
    return torch.nn.functional.gelu(gate) * value


SHAPES = [(2, 3, 8), (5, 2), (1, 512), (3, 0, 6), (4, 7, 34)]  # odd h, h = 1, an empty batch


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_gated_gelu_matches_the_composite_with_gradients(shape, dtype, device):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(*shape, generator=g, dtype=dtype) * 3).to(device).requires_grad_()
    grad = torch.randn(*shape[:-1], shape[-1] // 2, generator=g, dtype=dtype).to(device)
    got, want = qlam.ops.gated_gelu(x), _composite(x)
    # float32: the kernel's erf and ATen's are both approximations, a few 1e-6 apart (in absolute
    # terms; relatively more where GELU's tail is tiny); test_float32_kernel_is_as_close... says
    # which is nearer the exact value.
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, **tol)
    (got_grad,), (want_grad,) = torch.autograd.grad(got, x, grad), torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(got_grad, want_grad, **tol)


def test_float32_kernel_is_as_close_to_the_exact_gelu_as_atens():
    """Over [-10, 10]: the kernel's output and both gradient halves against float64 exact values,
    no further off than ATen's own float32 gelu (erf) and gelu_backward."""
    a = torch.linspace(-10, 10, 400_001, dtype=torch.float64)
    x = torch.stack([a, torch.ones_like(a)], -1)  # value 1: the output is GELU(a) itself
    exact_y = _composite(x)
    exact_grad = torch.autograd.grad(_composite(x.requires_grad_()).sum(), x)[0]
    x32 = x.detach().float().requires_grad_()
    for fn in (qlam.ops.gated_gelu, _composite):
        y = fn(x32)
        (grad,) = torch.autograd.grad(y.sum(), x32)
        err_y = (y.double() - exact_y).abs().max().item()
        err_grad = (grad.double() - exact_grad).abs().max().item()
        if fn is _composite:
            aten = (err_y, err_grad)
        else:
            ours = (err_y, err_grad)
    assert ours[0] <= max(2 * aten[0], 2e-6) and ours[1] <= max(2 * aten[1], 2e-6), (ours, aten)


def test_special_values():
    """Signed zeros, tiny and huge gates match the composite; NaN stays NaN; GELU(+inf) v = inf
    (ATen's vectorised gelu gives NaN there, its scalar path inf: not compared)."""
    gates = [0.0, -0.0, 1e-30, -1e-30, 50.0, -50.0, 1e20, -1e20, float("nan"), float("inf")]
    x = torch.tensor([gates + [3.0] * len(gates)]).requires_grad_()
    got, want = qlam.ops.gated_gelu(x), _composite(x)
    finite = slice(0, 8)
    torch.testing.assert_close(got[:, finite], want[:, finite], atol=1e-6, rtol=1e-6)
    assert torch.isnan(got[0, 8]) and got[0, 9] == float("inf")
    grad = torch.ones(1, len(gates))
    (gg,), (gw,) = torch.autograd.grad(got, x, grad), torch.autograd.grad(want, x, grad)
    keep = [i for i in range(2 * len(gates)) if i % len(gates) < 8]
    torch.testing.assert_close(gg[:, keep], gw[:, keep], atol=1e-6, rtol=1e-6)
    assert torch.isnan(gg[0, 8])


def test_gated_gelu_reads_noncontiguous_input():
    x = torch.randn(10, 3, dtype=torch.float64).t()  # (3, 10), not contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(qlam.ops.gated_gelu(x), _composite(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_types_run_the_composite(dtype):
    x = torch.randn(3, 8).to(dtype).requires_grad_()
    got, want = qlam.ops.gated_gelu(x), _composite(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want)
    (gg,), (gw,) = torch.autograd.grad(got.sum(), x), torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(gg, gw)


@pytest.mark.parametrize("device", DEVICES)
def test_gated_gelu_gradcheck(device):
    x = torch.randn(3, 2, 10, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(qlam.ops.gated_gelu, (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_gated_gelu_opcheck(device):
    x = torch.randn(3, 2, 10, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.qlam.gated_gelu.default, (x,))
    grad = torch.randn(3, 2, 5, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.qlam.gated_gelu_backward.default, (grad, x.detach()))


def test_gated_gelu_double_backward_is_a_clear_error():
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(qlam.ops.gated_gelu(x).sum(), x, create_graph=True)


@pytest.mark.parametrize("shape,match", [((2, 5), "even"), ((), "0-d"), ((3, 0), "at least 2")])
def test_gated_gelu_rejects_bad_shapes(shape, match):
    with pytest.raises(RuntimeError, match=match):
        qlam.ops.gated_gelu(torch.randn(shape))


def test_gated_gelu_rejects_integers_and_a_wrong_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        qlam.ops.gated_gelu(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="output's shape"):
        torch.ops.qlam.gated_gelu_backward(torch.randn(2, 4), torch.randn(2, 4))


def test_feed_forward_runs_the_op_and_keeps_its_numbers(monkeypatch):
    """GatedFeedForward goes through qlam.ops.gated_gelu, with the composite's outputs and gradients."""
    from qlam.models import common
    torch.manual_seed(0)
    ff = GatedFeedForward(6, 2, 0.0).double()
    x = torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True)
    calls = []
    real = common.ops.gated_gelu
    monkeypatch.setattr(common.ops, "gated_gelu", lambda h: calls.append(h.shape) or real(h))
    got = ff(x)
    assert calls == [(3, 5, 24)]
    want = ff.out(_composite(ff.inp(x)))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    g_got = torch.autograd.grad(got.sum(), [x, *ff.parameters()])
    g_want = torch.autograd.grad(want.sum(), [x, *ff.parameters()])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_float32_erf_grid_is_close_to_exact():
    """The kernel's GELU at value 1 is a * Phi(a): Phi from its float32 erf, checked at many points
    against math.erf (a guard on the rational approximation's coefficients)."""
    a = torch.linspace(-6, 6, 2001)
    x = torch.stack([a, torch.ones_like(a)], -1)
    y = qlam.ops.gated_gelu(x).double().squeeze(-1)
    exact = torch.tensor([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in a.double().tolist()],
                         dtype=torch.float64)
    assert (y - exact).abs().max().item() < 2e-6
