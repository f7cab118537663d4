"""qlam.QLAMCell: nn.LSTMCell's interface, the numbers of qlam.QLAM stepped token by token."""
import pytest
import torch
from torch import nn

import qlam

SMALL = dict(n_qubits=3, n_heads=2, depth=2, n_measurements=3)
F64 = torch.float64


def _pair(seed=0, backend="auto", small=True, **kw):
    """A batch-first float64 QLAM and a cell sharing its parameters."""
    torch.manual_seed(seed)
    options = dict(SMALL if small else {}, **kw)
    layer = qlam.QLAM(5, 7, batch_first=True, backend=backend, dtype=F64, **options)
    return layer, qlam.QLAMCell.from_layer(layer)


def _step(cell, x, state=None):
    """Runs the cell over x (B, T, F) token by token: outputs (B, T, hidden) and the final state."""
    hs = []
    for t in range(x.shape[1]):
        h, state = cell(x[:, t], state)
        hs.append(h)
    return torch.stack(hs, 1), state


@pytest.mark.parametrize("options", [
    dict(small=False),  # every default: n = 6, 4 heads, rzz, fixed step
    dict(entangler="cnot", step_size="none"),  # the paper's map
    dict(step_size="selective"),
    dict(entangler="cz", pair_features=True, angle_map="tanh"),
], ids=["defaults", "cnot-none", "selective", "cz-pairs-tanh"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_stepping_matches_the_sequence_layer(options, backend):
    layer, cell = _pair(backend=backend, **options)
    x = torch.randn(3, 6, 5, dtype=F64)
    out, state = layer(x)
    hs, final = _step(cell, x)
    torch.testing.assert_close(hs, out, atol=1e-10, rtol=0)
    torch.testing.assert_close(final, state[0], atol=1e-10, rtol=0)
    assert final.dtype == torch.complex128 and final.shape == (3, layer.n_heads, 2**layer.n_qubits)


def test_state_passed_in_continues_like_the_layer():
    layer, cell = _pair()
    x = torch.randn(2, 5, 5, dtype=F64)
    _, mid = layer(x[:, :2])
    out, state = layer(x[:, 2:], mid)
    hs, final = _step(cell, x[:, 2:], mid[0])
    torch.testing.assert_close(hs, out, atol=1e-10, rtol=0)
    torch.testing.assert_close(final, state[0], atol=1e-10, rtol=0)
    # None and initial_state() are the same start
    h0, s0 = cell(x[:, 0])
    h1, s1 = cell(x[:, 0], cell.initial_state(2))
    torch.testing.assert_close(h0, h1, atol=0, rtol=0)
    torch.testing.assert_close(s0, s1, atol=0, rtol=0)


def test_fresh_cell_has_the_layers_defaults_and_weights():
    torch.manual_seed(0)
    layer = qlam.QLAM(5, 7, batch_first=True, dtype=F64)
    torch.manual_seed(0)
    cell = qlam.QLAMCell(5, 7, dtype=F64)
    assert (cell.n_qubits, cell.n_heads, cell.depth, cell.entangler, cell.step_size) == (6, 4, 2, "rzz", "fixed")
    x = torch.randn(2, 4, 5, dtype=F64)
    out, state = layer(x)
    hs, final = _step(cell, x)
    torch.testing.assert_close(hs, out, atol=1e-10, rtol=0)
    torch.testing.assert_close(final, state[0], atol=1e-10, rtol=0)
    assert sum(p.numel() for p in cell.parameters()) == sum(p.numel() for p in layer.parameters())


def test_float32_cell_and_state_shapes():
    cell = qlam.QLAMCell(5, 7, **SMALL)
    h, state = cell(torch.randn(4, 5))
    assert h.shape == (4, 7) and h.dtype == torch.float32
    assert state.shape == (4, 2, 8) and state.dtype == torch.complex64
    assert cell.initial_state(4).dtype == torch.complex64
    torch.testing.assert_close(state.abs().pow(2).sum(-1), torch.ones(4, 2), atol=1e-5, rtol=0)


def test_unbatched_input_like_lstm_cell():
    _, cell = _pair()
    x = torch.randn(4, 5, dtype=F64)
    hs, final = _step(cell, x[None])
    state = None
    for t in range(4):
        h, state = cell(x[t], state)
        assert h.shape == (7,) and state.shape == (2, 8)
    torch.testing.assert_close(h, hs[0, -1], atol=1e-12, rtol=0)
    torch.testing.assert_close(state, final[0], atol=1e-12, rtol=0)
    assert cell.initial_state().shape == (2, 8)
    ref_h, _ = nn.LSTMCell(5, 7)(torch.randn(5))
    assert ref_h.shape == h.shape


def test_gradients_through_steps_match_the_layer():
    layer, cell = _pair()
    params = list(layer.parameters())
    x = torch.randn(2, 4, 5, dtype=F64)
    init = layer.initial_state(2, dtype=torch.complex128)[0]  # (B, H, 2**n): a normalised, non-basis start
    init = init + 0.3 * torch.randn_like(init)
    init = init / init.abs().pow(2).sum(-1, keepdim=True).sqrt()
    w = torch.randn(2, 4, 7, dtype=F64)
    a, b = torch.randn(2, 2, 8, dtype=F64), torch.randn(2, 2, 8, dtype=F64)

    def loss(out, final):
        return (out * w).sum() + (final.real * a).sum() + (final.imag * b).sum()

    xs, s0 = x.clone().requires_grad_(), init.clone().requires_grad_()
    out, state = layer(xs, s0[None])
    want = torch.autograd.grad(loss(out, state[0]), [xs, s0] + params)
    xc, sc = x.clone().requires_grad_(), init.clone().requires_grad_()
    hs, final = _step(cell, xc, sc)
    got = torch.autograd.grad(loss(hs, final), [xc, sc] + params)
    assert len(params) == len(list(cell.parameters()))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=0)


def test_from_layer_shares_parameters():
    layer, cell = _pair()
    assert all(p is q for p, q in zip(cell.parameters(), layer.parameters()))
    x = torch.randn(2, 5, dtype=F64)
    before, _ = cell(x)
    with torch.no_grad():
        layer.cells[0].readout.bias.add_(1.0)
    after, _ = cell(x)
    torch.testing.assert_close(after, before + 1.0, atol=1e-12, rtol=0)
    # and training the cell moves the layer
    cell(x)[0].sum().backward()
    assert layer.cells[0].readout.weight.grad is not None


def test_stacked_cells_match_a_two_layer_qlam():
    torch.manual_seed(0)
    layer = qlam.QLAM(5, 7, num_layers=2, batch_first=True, dtype=F64, **SMALL)
    cells = [qlam.QLAMCell.from_layer(layer, k) for k in range(2)]
    x = torch.randn(2, 4, 5, dtype=F64)
    out, state = layer(x)
    states, hs = [None, None], []
    for t in range(4):
        h = x[:, t]
        for k, cell in enumerate(cells):
            h, states[k] = cell(h, states[k])
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), out, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.stack(states), state, atol=1e-10, rtol=0)


def test_input_and_state_errors():
    cell = qlam.QLAMCell(5, 7, **SMALL)
    with pytest.raises(ValueError, match=r"\(B, input_size\) or \(input_size,\) unbatched, with input_size=5; "
                                         r"got shape \(3, 4\)"):
        cell(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 5\)"):
        cell(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="input must be a tensor"):
        cell([0.0] * 5)
    x = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"state must have shape \(3, 2, 8\) \(B, n_heads, 2\*\*n_qubits\), "
                                         r"got \(2, 2, 8\)"):
        cell(x, cell.initial_state(2))
    with pytest.raises(ValueError, match=r"state must have shape \(3, 2, 8\).*got \(1, 3, 2, 8\)"):
        cell(x, qlam.QLAM(5, 7, **SMALL).initial_state(3))  # the layer's (layers, B, ...) state
    with pytest.raises(ValueError, match=r"state must have shape \(2, 8\) \(n_heads, 2\*\*n_qubits\) for an "
                                         r"unbatched input, got \(1, 2, 8\)"):
        cell(x[0], cell.initial_state(1))
    with pytest.raises(TypeError, match="state must be complex64 or complex128.*got torch.float32"):
        cell(x, torch.zeros(3, 2, 8))
    with pytest.raises(TypeError, match="state must be a complex tensor or None"):
        cell(x, 0)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="state is on cuda.* but input is on cpu"):
            cell(x, cell.initial_state(3, device="cuda"))
    else:
        with pytest.raises(ValueError, match="state is on meta but input is on cpu"):
            cell(x, cell.initial_state(3).to("meta"))


def test_constructor_and_from_layer_errors():
    with pytest.raises(ValueError, match="QLAMCell: entangler must be one of"):
        qlam.QLAMCell(5, 7, entangler="swap")
    with pytest.raises(ValueError, match="QLAMCell: step_size must be one of"):
        qlam.QLAMCell(5, 7, step_size="adaptive")
    with pytest.raises(ValueError, match="QLAMCell: hidden_size must be a positive integer, got 0"):
        qlam.QLAMCell(5, 0)
    with pytest.raises(ValueError, match="QLAMCell: backend must be one of"):
        qlam.QLAMCell(5, 7, backend="gpu")
    with pytest.raises(TypeError, match="expected a qlam.QLAM, got LSTM"):
        qlam.QLAMCell.from_layer(nn.LSTM(5, 7))
    with pytest.raises(ValueError, match="bidirectional"):
        qlam.QLAMCell.from_layer(qlam.QLAM(5, 7, bidirectional=True, **SMALL))
    with pytest.raises(ValueError, match=r"layer_index must be an integer in \[0, 1\].*num_layers=2\), got 2"):
        qlam.QLAMCell.from_layer(qlam.QLAM(5, 7, num_layers=2, **SMALL), 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        qlam.QLAMCell.from_layer(qlam.QLAM(5, 7, **SMALL), backend="gpu")
