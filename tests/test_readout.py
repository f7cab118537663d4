"""qlam.ops.readout (the layer's query-weighted readings as one op): agreement with the einsum it
replaces, gradients, the op's registration (opcheck), bad input, and the layer using it."""
import pytest
import torch

import qlam
from scan_cases import DEVICES

SHAPES = [  # (leading dims, J, K)
    ((2, 3, 4), 4, 18),
    ((5,), 1, 3),
    ((2, 0, 3), 4, 12),  # an empty batch
    ((3, 2), 7, 1),
    ((), 2, 5),  # no leading dims
]


def _einsum(query, features):
    return torch.einsum("...jk,...k->...j", query, features)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lead,J,K", SHAPES)
def test_readout_matches_einsum_with_gradients(lead, J, K, dtype, device):
    g = torch.Generator().manual_seed(J * 100 + K)
    query = torch.randn(*lead, J, K, generator=g, dtype=dtype).to(device).requires_grad_()
    features = torch.randn(*lead, K, generator=g, dtype=dtype).to(device).requires_grad_()
    grad = torch.randn(*lead, J, generator=g, dtype=dtype).to(device)
    got = qlam.ops.readout(query, features)
    want = _einsum(query, features)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    assert got.shape == want.shape == (*lead, J)
    torch.testing.assert_close(got, want, **tol)
    got_grads = torch.autograd.grad(got, (query, features), grad, allow_unused=True)
    want_grads = torch.autograd.grad(want, (query, features), grad, allow_unused=True)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b if b is not None else torch.zeros_like(a), **tol)


def test_readout_reads_noncontiguous_inputs():
    query = torch.randn(4, 3, 5, 6, dtype=torch.float64).transpose(0, 1)  # (3, 4, 5, 6), not contiguous
    features = torch.randn(6, 4, 3, dtype=torch.float64).permute(2, 1, 0)  # (3, 4, 6)
    torch.testing.assert_close(qlam.ops.readout(query, features), _einsum(query, features), atol=1e-12, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_readout_gradcheck(device):
    query = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    features = torch.randn(2, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(qlam.ops.readout, (query, features))


@pytest.mark.parametrize("device", DEVICES)
def test_readout_opcheck(device):
    query = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    features = torch.randn(2, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.qlam.readout.default, (query, features))
    grad = torch.randn(2, 3, 4, dtype=torch.float64, device=device)
    torch.library.opcheck(torch.ops.qlam.readout_backward.default, (grad, query.detach(), features.detach()))


def test_readout_double_backward_is_a_clear_error():
    query = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    features = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    y = qlam.ops.readout(query, features)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.sum(), query, create_graph=True)


@pytest.mark.parametrize("query_shape,features_shape,match", [
    ((2, 4, 5), (2, 6), "last dimension"),
    ((2, 4, 5), (3, 5), "leading dimensions"),
    ((2, 4, 5), (2, 3, 5), "one more dimension"),
    ((4, 5), (), "0-d"),
])
def test_readout_rejects_mismatched_shapes(query_shape, features_shape, match):
    with pytest.raises(RuntimeError, match=match):
        qlam.ops.readout(torch.randn(query_shape), torch.randn(features_shape))


def test_readout_rejects_mixed_and_integer_dtypes():
    with pytest.raises(RuntimeError, match="one dtype"):
        qlam.ops.readout(torch.randn(2, 4, 5), torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="floating point"):
        qlam.ops.readout(torch.ones(2, 4, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))


def test_readout_backward_rejects_a_wrong_grad_shape():
    with pytest.raises(RuntimeError, match="readings' shape"):
        torch.ops.qlam.readout_backward(torch.randn(2, 3), torch.randn(2, 4, 5), torch.randn(2, 5))


def test_layer_kernel_path_reads_through_the_op_and_agrees_with_the_reference(monkeypatch):
    """The layer's kernel path reads through qlam.ops.readout, its reference path through einsum."""
    from qlam import layer as layer_module
    calls = []
    real = layer_module.ops.readout
    monkeypatch.setattr(layer_module.ops, "readout", lambda q, f: calls.append(q.shape) or real(q, f))
    torch.manual_seed(0)
    direction = qlam.QLAM(5, 6, n_qubits=3, n_heads=2, batch_first=True, dtype=torch.float64).cells[0]
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    want, _ = direction(x, None, None, False, None)
    assert calls == []
    got, _ = direction(x, None, None, True, None)
    assert calls == [(2, 7, 2, direction.n_measurements, direction.n_features)]
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    gx_got, = torch.autograd.grad(got.sum(), x)
    gx_want, = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(gx_got, gx_want, atol=1e-10, rtol=0)
