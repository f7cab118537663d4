"""qlam.QLAM as a drop-in for nn.LSTM."""
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import qlam


def _layer(**kw):
    torch.manual_seed(0)
    base = dict(input_size=5, hidden_size=7, n_qubits=3, n_heads=2, depth=2, n_measurements=3)
    base.update(kw)
    return qlam.QLAM(**base)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_output_shapes_follow_lstm(batch_first, bidirectional, num_layers):
    layer = _layer(batch_first=batch_first, bidirectional=bidirectional, num_layers=num_layers)
    lstm = nn.LSTM(5, 7, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    x = torch.randn((3, 6, 5) if batch_first else (6, 3, 5))
    out, state = layer(x)
    ref_out, _ = lstm(x)
    assert out.shape == ref_out.shape
    dirs = 2 if bidirectional else 1
    assert state.shape == (num_layers * dirs, 3, 2, 8) and state.is_complex()


@pytest.mark.parametrize("entangler", ["cnot", "cz", "rzz", "none"])
@pytest.mark.parametrize("pair_features", [False, True])
def test_kernel_and_reference_backends_agree(entangler, pair_features):
    kernel = _layer(entangler=entangler, pair_features=pair_features, backend="kernel", dtype=torch.float64)
    ref = _layer(entangler=entangler, pair_features=pair_features, backend="reference", dtype=torch.float64)
    ref.load_state_dict(kernel.state_dict())
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    out_k, state_k = kernel(x)
    out_r, state_r = ref(x)
    torch.testing.assert_close(out_k, out_r)
    torch.testing.assert_close(state_k, state_r)
    out_k.square().sum().backward()
    out_r.square().sum().backward()
    for (name, pk), pr in zip(kernel.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pk.grad, pr.grad, msg=name)


def test_state_carried_over_two_halves_equals_whole_sequence():
    layer = _layer(num_layers=2, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 10, 5, dtype=torch.float64)
    whole, state_whole = layer(x)
    first, state = layer(x[:, :4])
    second, state = layer(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(state, state_whole)


def test_packed_sequence_matches_per_sequence_runs():
    layer = _layer(batch_first=True, bidirectional=True, dtype=torch.float64)
    lengths = torch.tensor([4, 7, 2])
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_packed, state = layer(packed)
    out, out_lengths = pad_packed_sequence(out_packed, batch_first=True)
    assert torch.equal(out_lengths, lengths)
    assert torch.equal(out_packed.sorted_indices, packed.sorted_indices)
    for b in range(3):
        single, single_state = layer(x[b:b + 1, : lengths[b]])
        torch.testing.assert_close(out[b:b + 1, : lengths[b]], single)
        torch.testing.assert_close(state[:, b:b + 1], single_state)


def test_lengths_keyword_matches_packed_input():
    layer = _layer(batch_first=True, dtype=torch.float64)
    lengths = torch.tensor([3, 6])
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    out, state = layer(x, lengths=lengths)
    packed_out, packed_state = layer(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(state, packed_state)
    torch.testing.assert_close(out[0, :3], pad_packed_sequence(packed_out, batch_first=True)[0][0, :3])


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="entangler must be one of"):
        _layer(entangler="swap")
    with pytest.raises(ValueError, match="n_qubits must be a positive integer"):
        _layer(n_qubits=0)
    with pytest.raises(ValueError, match="backend must be one of"):
        _layer(backend="gpu")
    layer = _layer()
    with pytest.raises(ValueError, match="expected input_size=5 features, got 4"):
        layer(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="state must have shape"):
        layer(torch.randn(3, 2, 5), torch.zeros(1, 2, 2, 4, dtype=torch.complex64))


def test_auto_backend_warns_once_when_falling_back(monkeypatch):
    from qlam import layer as layer_module

    monkeypatch.setattr(layer_module, "_warned_fallback", False)
    monkeypatch.setattr(qlam._extension, "max_qubits", lambda: 2)
    layer = _layer()
    with pytest.warns(RuntimeWarning, match="reference scan because n_qubits=3 exceeds"):
        layer(torch.randn(3, 2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(torch.randn(3, 2, 5))


def test_autocast_runs_the_scan_in_float32():
    layer = _layer(batch_first=True)
    x = torch.randn(2, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x)
    assert state.dtype == torch.complex64
    angles = torch.randn(2, 4, 2, 1, 3, 3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, final = torch.ops.qlam.scan(angles, None, None, None, "cnot", False)
    assert features.dtype == torch.float32 and final.dtype == torch.complex64


class LSTMClassifier(nn.Module):
    """A model written for nn.LSTM: embedding, recurrent layer, classifier on the last step."""

    def __init__(self, vocab, rnn_factory):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.rnn = rnn_factory(8, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, tokens):
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


def _toy_batch(generator, n=64, T=12):
    """Is token 1 in the sequence more often than token 2? Needs memory of the whole sequence."""
    tokens = torch.randint(0, 4, (n, T), generator=generator)
    labels = ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long()
    return tokens, labels


def test_swap_into_an_lstm_model_and_train():
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    model = LSTMClassifier(4, lambda i, h: qlam.QLAM(i, h, batch_first=True, n_qubits=4, n_heads=2, depth=1))
    assert isinstance(model.rnn, qlam.QLAM)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for step in range(150):
        tokens, labels = _toy_batch(data)
        loss = nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    with torch.no_grad():
        tokens, labels = _toy_batch(torch.Generator().manual_seed(1), n=512)
        accuracy = (model(tokens).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.8, accuracy


@pytest.mark.parametrize("entangler", ["rzz", "cnot"])
def test_fixed_step_folded_into_the_angle_weights_matches_per_token_scaling(entangler):
    # step_size="fixed" scales the angle projection's rows once (layer.py, _step_folds_into_angles)
    # unless something observes that projection; a forward hook on it forces the per-token path.
    torch.manual_seed(0)
    layer = qlam.QLAM(5, 6, n_qubits=3, n_heads=2, depth=2, entangler=entangler, batch_first=True,
                      dtype=torch.float64)
    direction = layer.cells[0]
    assert direction.step_bias is not None and direction._step_folds_into_angles()
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    folded_angles = direction.circuit_angles(x)
    folded_out, folded_state = layer(x)
    folded_grads = torch.autograd.grad(folded_out.sum(), list(layer.parameters()))
    seen = []
    handle = direction.angles.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        assert not direction._step_folds_into_angles()
        token_angles = direction.circuit_angles(x)
        token_out, token_state = layer(x)
        token_grads = torch.autograd.grad(token_out.sum(), list(layer.parameters()))
    finally:
        handle.remove()
    assert seen, "the hook must see the projection's output on the per-token path"
    for a, b in zip(folded_angles, token_angles):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(folded_out, token_out, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(folded_state, token_state, atol=1e-12, rtol=1e-12)
    for a, b in zip(folded_grads, token_grads):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-10)
