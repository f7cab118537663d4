"""Property-based fuzzing of qlam.QLAM (hypothesis, fixed budget): random
configurations and inputs (zero batch and length, padded lengths, packed
sequences, carried state) give the same outputs, states and gradients with
the fused kernel as with the reference backend; a NaN in one sequence's input
leaves the other sequences of the batch untouched."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import qlam
from qlam import reference

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
pytestmark = pytest.mark.timeout(300, method="thread")  # a hang in C++ holds the GIL


@st.composite
def configs(draw):
    return dict(
        input_size=draw(st.integers(1, 4)),
        hidden_size=draw(st.integers(1, 5)),
        num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        n_qubits=draw(st.integers(1, 6)),
        n_heads=draw(st.integers(1, 2)),
        depth=draw(st.integers(1, 2)),
        entangler=draw(st.sampled_from(reference.ENTANGLERS)),
        n_measurements=draw(st.integers(1, 3)),
        pair_features=draw(st.booleans()),
        checkpoint_every=draw(st.sampled_from([None, 2])),
    )


def _pair(cfg, seed):
    """The same weights behind the kernel and the reference backends, in float64."""
    torch.manual_seed(seed)
    kernel = qlam.QLAM(**cfg, backend="kernel", dtype=torch.float64)
    ref = qlam.QLAM(**cfg, backend="reference", dtype=torch.float64)
    ref.load_state_dict(kernel.state_dict())
    return kernel, ref


def _inputs(cfg, B, T, lengths_mode, with_state, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, cfg["input_size"], generator=g, dtype=torch.float64)
    lengths = None
    if lengths_mode == "padded":
        lengths = torch.randint(0, T + 1, (B,), generator=g)
    elif lengths_mode == "packed":
        lengths = torch.randint(1, T + 1, (B,), generator=g)  # packing needs every length >= 1
    state = None
    if with_state:
        dirs = 2 if cfg["bidirectional"] else 1
        state = torch.randn(cfg["num_layers"] * dirs, B, cfg["n_heads"], 2 ** cfg["n_qubits"], generator=g,
                            dtype=torch.complex128)
        state = state / torch.linalg.vector_norm(state, dim=-1, keepdim=True)
    return x, lengths, state


def _call(layer, cfg, x, lengths, lengths_mode, state):
    x = x.clone().requires_grad_(True)
    if lengths_mode == "packed":
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, new_state = layer(packed, state)
        assert isinstance(out, PackedSequence)
        out = out.data
    else:
        inp = x if cfg["batch_first"] else x.transpose(0, 1)
        out, new_state = layer(inp, state, lengths if lengths_mode == "padded" else None)
    return x, out, new_state


@settings(FUZZ, max_examples=100)
@given(cfg=configs(), B=st.integers(0, 3), T=st.integers(0, 5),
       lengths_mode=st.sampled_from(["none", "padded", "packed"]), with_state=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_layer_kernel_matches_reference(cfg, B, T, lengths_mode, with_state, seed):
    if lengths_mode == "packed":
        B, T = max(B, 1), max(T, 1)
    kernel, ref = _pair(cfg, seed)
    x, lengths, state = _inputs(cfg, B, T, lengths_mode, with_state, seed)
    results = []
    for layer in (kernel, ref):
        x_leaf, out, new_state = _call(layer, cfg, x, lengths, lengths_mode, state)
        dirs = 2 if cfg["bidirectional"] else 1
        assert out.shape[-1] == cfg["hidden_size"] * dirs
        assert new_state.shape == (cfg["num_layers"] * dirs, B, cfg["n_heads"], 2 ** cfg["n_qubits"])
        loss = out.square().sum() + new_state.abs().square().sum()  # the state term is constant (norm 1)
        inputs = [x_leaf] + list(layer.parameters())
        # Unused (None) means zero: the reference's T = 0 scan is a constant.
        grads = torch.autograd.grad(loss, inputs, allow_unused=True) if loss.requires_grad else [None] * len(inputs)
        results.append((out, new_state, [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads)]))
    (out_k, state_k, grads_k), (out_r, state_r, grads_r) = results
    torch.testing.assert_close(out_k, out_r, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(state_k, state_r, atol=1e-10, rtol=1e-9)
    assert len(grads_k) == len(grads_r)
    for gk, gr in zip(grads_k, grads_r):
        torch.testing.assert_close(gk, gr, atol=1e-9, rtol=1e-8)


@settings(FUZZ, max_examples=40)
@given(cfg=configs(), B=st.integers(2, 4), T=st.integers(1, 5), pick=st.integers(0, 2**31 - 1),
       value=st.sampled_from([math.nan, math.inf]), seed=st.integers(0, 2**31 - 1))
def test_layer_nan_input_stays_in_its_sequence(cfg, B, T, pick, value, seed):
    """A bad value at x[b, t] gives non-finite outputs for sequence b from t on
    (and up to t in the backward direction) and non-finite final states for b,
    and leaves every other sequence exactly as in a clean run."""
    cfg = {**cfg, "batch_first": True}
    kernel, _ = _pair(cfg, seed)
    x, _, _ = _inputs(cfg, B, T, "none", False, seed)
    b, t = pick % B, (pick // B) % T
    bad = x.clone()
    bad[b, t, pick % cfg["input_size"]] = value
    with torch.no_grad():
        out, state = kernel(bad)
        clean_out, clean_state = kernel(x)
    others = torch.arange(B) != b
    assert torch.equal(out[others], clean_out[others])
    assert torch.equal(state[:, others], clean_state[:, others])
    if cfg["bidirectional"]:  # the forward half is bad from t on, the backward half up to t
        assert (~torch.isfinite(out[b])).any(-1).all()
    else:
        assert torch.equal(out[b, :t], clean_out[b, :t])
        assert not torch.isfinite(out[b, t:]).any()
    assert not torch.isfinite(state[:, b]).any()

def test_too_many_qubits_kernel_backend_is_a_clear_error():
    n = qlam._extension.max_qubits() + 1
    layer = qlam.QLAM(2, 3, n_qubits=n, n_heads=1, depth=1, backend="kernel")
    with pytest.raises(RuntimeError, match=rf"n_qubits \(angles.shape\[4\]\) must be in \[1, {n - 1}\].*got {n}"):
        layer(torch.randn(1, 1, 2))
