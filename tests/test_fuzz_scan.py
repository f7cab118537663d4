"""Property-based fuzzing of qlam.ops.scan (hypothesis, fixed budget), on every
backend: the CPU kernel, the CUDA kernels' per-state program emulated on the
CPU (csrc/state_program.h with 32 emulated lanes), and the CUDA kernel where a
GPU is present.

Random shapes (zero batch and length included), float32/float64, memory
layouts (sliced, permuted, broadcast), lengths, every entangler, pair
features, n = 1..max and huge angles: every case matches qlam.reference.scan
or raises one of the documented errors. Non-finite inputs follow the policy
of docs/numerics.md: they poison only the state they enter, from their token
on, and nothing else.
"""
import contextlib
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlam
from qlam import reference

MAX_N = qlam._extension.build_info()["max_qubits"]
# Examples are derandomized (the same cases every run, nothing written to
# .hypothesis/) and the budget keeps all fuzz tests together under a minute.
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A hang in the C++ holds the GIL, so only the thread method can stop it.
pytestmark = pytest.mark.timeout(300, method="thread")

LAYOUTS = ("contiguous", "sliced", "permuted", "broadcast")
# Amplitudes x batch x tokens x heads x layers per example: keeps the reference fast.
WORK = 2**13


@st.composite
def cases(draw, max_batch=3, max_tokens=5):
    n = draw(st.integers(1, MAX_N))
    budget = max(1, WORK >> n)
    B = draw(st.integers(0, min(max_batch, budget)))
    T = draw(st.integers(0, min(max_tokens, max(1, budget // max(B, 1)))))
    H = draw(st.integers(1, max(1, min(2, budget // max(B * T, 1)))))
    L = draw(st.integers(0, max(0, min(2, budget // max(B * T * H, 1)))))
    return dict(
        B=B, T=T, H=H, L=L, n=n,
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        entangler=draw(st.sampled_from(reference.ENTANGLERS)),
        pair_features=draw(st.booleans()),
        with_init=draw(st.booleans()),
        lengths=draw(st.sampled_from(["none", "random", "zeros", "full"])),
        layout=draw(st.sampled_from(LAYOUTS)),
        huge=draw(st.sampled_from([None, 1e6, 1e30])),
        checkpoint_every=draw(st.sampled_from([None, 1, 2, 3])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _layout(x: torch.Tensor, layout: str, seed: int) -> torch.Tensor:
    """The same values in another memory layout (a differentiable function of x)."""
    if layout == "sliced":  # every other element of a wider buffer
        wide = x.new_zeros(*x.shape[:-1], 2 * x.shape[-1])
        wide[..., ::2] = x
        return wide[..., ::2]
    if layout == "permuted":  # stored in a shuffled dimension order, read back in the logical one
        perm = torch.randperm(x.dim(), generator=torch.Generator().manual_seed(seed)).tolist()
        inverse = [perm.index(d) for d in range(x.dim())]
        return x.permute(perm).contiguous().permute(inverse)
    return x


def make_case(c: dict, requires_grad: bool, as_float64: bool = False):
    """Leaves (the tensors gradients are taken for) and the op's keyword arguments.
    as_float64: the same values (rounded to c's dtype first) in float64, for the reference."""
    g = torch.Generator().manual_seed(c["seed"])
    B, T, H, L, n, dtype = c["B"], c["T"], c["H"], c["L"], c["n"], c["dtype"]
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    angles = torch.rand(B, T, H, L, n, 3, generator=g, dtype=torch.float64) * 6.4 - 3.2
    ent = None
    if c["entangler"] == "rzz":
        ent = torch.rand(B, T, H, L, reference.num_pairs(n), generator=g, dtype=torch.float64) * 6.4 - 3.2
    if c["huge"] is not None:
        for t in (angles,) if ent is None else (angles, ent):
            mask = torch.rand(t.shape, generator=g) < 0.3
            sign = torch.where(torch.rand(t.shape, generator=g) < 0.5, -1.0, 1.0).to(t)
            t[mask] = (c["huge"] * sign + t)[mask]
            # Multiples of 1/4: the sums the scan forms (phi +- omega, the rzz
            # phases) stay exact in float32 up to 2**22, so the float64
            # reference sees the same angles (beyond that both round to V).
            t.copy_(torch.round(t * 4) / 4)
    init = None
    if c["with_init"]:
        init = torch.randn(B, H, 2**n, generator=g, dtype=torch.complex128)
        init = init / torch.linalg.vector_norm(init, dim=-1, keepdim=True)
    lengths = None
    if c["lengths"] == "random":
        lengths = torch.randint(0, T + 1, (B,), generator=g)
    elif c["lengths"] == "zeros":
        lengths = torch.zeros(B, dtype=torch.long)
    elif c["lengths"] == "full":
        lengths = torch.full((2 * B,), T, dtype=torch.long)[::2]  # a non-contiguous view
    leaves = {}
    for name, t, dt in (("angles", angles, dtype), ("ent_angles", ent, dtype), ("init_state", init, cdtype)):
        if t is not None:
            leaf = t.to(dt)
            if as_float64:
                leaf = leaf.to(torch.complex128 if leaf.is_complex() else torch.float64)
            if c["layout"] == "broadcast" and B > 0:
                leaf = leaf[:1].clone()  # broadcast inputs: the leaf holds one batch row
            leaves[name] = leaf.requires_grad_(requires_grad)
    # broadcast: every batch entry reads the leaf's one row (stride 0).
    kwargs = {name: leaf.expand(B, *leaf.shape[1:]) if c["layout"] == "broadcast" else _layout(leaf, c["layout"], c["seed"])
              for name, leaf in leaves.items()}
    kwargs.update(lengths=lengths, entangler=c["entangler"], pair_features=c["pair_features"])
    return leaves, kwargs


def _run(fn, leaves, kwargs, seed):
    """fn(**kwargs), plus the leaves' gradients of a random linear loss when they require grad."""
    features, final = fn(**kwargs)
    grads = []
    if any(t.requires_grad for t in leaves.values()):
        g = torch.Generator().manual_seed(seed + 1)
        gf = torch.randn(features.shape, generator=g, dtype=torch.float64).to(features.dtype)
        gs = torch.randn(final.shape, generator=g, dtype=torch.complex128).to(final.dtype)
        loss = (features * gf).sum() + (final.conj() * gs).real.sum()
        inputs = list(leaves.values())
        # The layout ops are shared by both runs (retain_graph); the reference's
        # empty outputs (T = 0 without init_state) are constants.
        grads = torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True) if loss.requires_grad else [None] * len(inputs)
        grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]
    return features, final, grads


def _assert_close(got, want, tol, what):
    """|got - want| <= tol * max(1, |want|_max): a relative tolerance that also holds near zero.
    want may be the float64 reference of a float32 result."""
    assert got.shape == want.shape and got.is_complex() == want.is_complex(), (what, got.shape, want.shape)
    got = got.to(want.dtype)
    if got.numel() == 0:
        return
    assert torch.isfinite(got).all(), f"{what}: non-finite values from finite inputs"
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _tolerance(dtype):
    return 1e-10 if dtype == torch.float64 else 2e-4


@contextlib.contextmanager
def chunk_tokens(k):
    """Makes the CPU kernel process the sequence k tokens at a time (to cross chunk edges)."""
    old = os.environ.get("QLAM_CPU_CHUNK_TOKENS")
    if k is not None:
        os.environ["QLAM_CPU_CHUNK_TOKENS"] = str(k)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("QLAM_CPU_CHUNK_TOKENS", None)
        else:
            os.environ["QLAM_CPU_CHUNK_TOKENS"] = old


class _EmulatedScan(torch.autograd.Function):
    """The CUDA program run on the CPU (torch.ops.qlam._warp_emulation_*) as a differentiable scan."""

    @staticmethod
    def forward(ctx, angles, ent_angles, init_state, lengths, entangler, pair_features, every):
        features, final, checkpoints = torch.ops.qlam._warp_emulation_forward(
            angles, ent_angles, init_state, lengths, entangler, pair_features, every)
        ctx.save_for_backward(angles, ent_angles, final, checkpoints, lengths)
        ctx.setup = (entangler, pair_features, every, init_state is not None)
        return features, final

    @staticmethod
    def backward(ctx, grad_features, grad_final):
        angles, ent_angles, final, checkpoints, lengths = ctx.saved_tensors
        entangler, pair_features, every, has_init = ctx.setup
        ga, ge, gi = torch.ops.qlam._warp_emulation_backward(
            grad_features, grad_final, angles, ent_angles, final, checkpoints, lengths, entangler, pair_features,
            every)
        return ga, (ge if ent_angles is not None else None), (gi if has_init else None), None, None, None, None


def emulated_scan(angles, ent_angles=None, init_state=None, lengths=None, entangler="cnot", pair_features=False,
                  checkpoint_every=None):
    return _EmulatedScan.apply(angles, ent_angles, init_state, lengths, entangler, pair_features,
                               int(checkpoint_every or 0))


def cuda_scan(checkpoint_every=None, **kwargs):
    """qlam.ops.scan on the GPU, inputs moved there and outputs back (both differentiable)."""
    moved = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    features, final = qlam.ops.scan(**moved, checkpoint_every=checkpoint_every)
    return features.cpu(), final.cpu()


def _check_backend(scan, c, with_grads, chunk=None):
    leaves, kwargs = make_case(c, requires_grad=with_grads)
    with chunk_tokens(chunk):
        got = _run(lambda **kw: scan(**kw, checkpoint_every=c["checkpoint_every"]), leaves, kwargs, c["seed"])
    # The oracle: the reference in float64 on the same (rounded) values.
    want = _run(reference.scan, *make_case(c, requires_grad=with_grads, as_float64=True), c["seed"])
    tol = _tolerance(c["dtype"])
    _assert_close(got[0], want[0], tol, "features")
    _assert_close(got[1], want[1], tol, "final_state")
    assert got[0].dtype == c["dtype"] and got[1].dtype == (torch.complex64 if c["dtype"] == torch.float32 else torch.complex128)
    for name, a, b in zip(leaves, got[2], want[2]):
        _assert_close(a, b, 10 * tol, f"grad {name}")
    if kwargs["lengths"] is not None and c["T"] > 0:
        # Positions past a sequence's length give exactly zero features.
        t = torch.arange(c["T"])[None, :]
        assert (got[0][t >= kwargs["lengths"][:, None]] == 0).all()


@settings(FUZZ, max_examples=400)
@given(c=cases(), with_grads=st.booleans(), chunk=st.sampled_from([None, 1, 2]))
def test_scan_matches_reference(c, with_grads, chunk):
    _check_backend(qlam.ops.scan, c, with_grads, chunk)


@settings(FUZZ, max_examples=150)
@given(c=cases(), with_grads=st.booleans())
def test_emulated_cuda_program_matches_reference(c, with_grads):
    _check_backend(emulated_scan, c, with_grads)


@pytest.mark.skipif(not torch.cuda.is_available() or not qlam._extension.supports(torch.device("cuda")),
                    reason="needs a GPU and a build with the CUDA kernels")
@settings(FUZZ, max_examples=150)
@given(c=cases(), with_grads=st.booleans())
def test_cuda_kernel_matches_reference(c, with_grads):
    _check_backend(cuda_scan, c, with_grads)


# ---------------------------------------------------------------- invalid inputs

def _shape_str(shape):
    return "\\[" + ", ".join(str(s) for s in shape) + "\\]"


INVALID = {
    # name: (change to the valid kwargs given c, expected message as a regex)
    "negative_length": (lambda c, kw: {"lengths": torch.full((c["B"],), -1 - c["seed"] % 5, dtype=torch.long)},
                        lambda c: rf"lengths must lie in \[0, T\] = \[0, {c['T']}\], got values in \[{-1 - c['seed'] % 5}, "),
    "length_past_end": (lambda c, kw: {"lengths": torch.full((c["B"],), c["T"] + 1 + c["seed"] % 5, dtype=torch.long)},
                        lambda c: rf"lengths must lie in \[0, T\] = \[0, {c['T']}\], got values in \[\d+, {c['T'] + 1 + c['seed'] % 5}\]"),
    "length_int32": (lambda c, kw: {"lengths": torch.zeros(c["B"], dtype=torch.int32)},
                     lambda c: r"lengths must be int64, got Int"),
    "length_float": (lambda c, kw: {"lengths": torch.zeros(c["B"], dtype=torch.float32)},
                     lambda c: r"lengths must be int64, got Float"),
    "length_bool": (lambda c, kw: {"lengths": torch.zeros(c["B"], dtype=torch.bool)},
                    lambda c: r"lengths must be int64, got Bool"),
    "length_too_many": (lambda c, kw: {"lengths": torch.zeros(c["B"] + 1, dtype=torch.long)},
                        lambda c: rf"lengths must have shape \(B,\) = \({c['B']},\), got {_shape_str([c['B'] + 1])}"),
    "length_2d": (lambda c, kw: {"lengths": torch.zeros(c["B"], 1, dtype=torch.long)},
                  lambda c: rf"lengths must have shape \(B,\) = \({c['B']},\), got {_shape_str([c['B'], 1])}"),
    "length_scalar": (lambda c, kw: {"lengths": torch.tensor(0)},
                      lambda c: rf"lengths must have shape \(B,\) = \({c['B']},\), got \[\]"),
    "angles_half": (lambda c, kw: {"angles": kw["angles"].detach().half()},
                    lambda c: r"angles must be float32 or float64, got Half"),
    "angles_int": (lambda c, kw: {"angles": kw["angles"].detach().long()},
                   lambda c: r"angles must be float32 or float64, got Long"),
    "angles_rank5": (lambda c, kw: {"angles": kw["angles"][..., 0]},
                     lambda c: r"angles must have shape \(B, T, H, L, n, 3\)"),
    "bad_entangler": (lambda c, kw: {"entangler": "CNOT"},
                      lambda c: r"unknown entangler 'CNOT'; expected one of 'cnot', 'cz', 'rzz', 'none'"),
    "init_wrong_precision": (lambda c, kw: {"init_state": torch.zeros(c["B"], c["H"], 2 ** c["n"], dtype=(
                                 torch.complex128 if c["dtype"] == torch.float32 else torch.complex64))},
                             lambda c: r"init_state must be Complex(Float|Double) to go with (Float|Double) angles"),
    "rzz_without_ent_angles": (lambda c, kw: {"entangler": "rzz", "ent_angles": None},
                               lambda c: rf"entangler='rzz' needs ent_angles of shape \(B, T, H, L, P\) with P = "
                                         rf"{reference.num_pairs(c['n'])} pairs for n = {c['n']}"),
    "ent_angles_without_rzz": (lambda c, kw: {"entangler": "cz", "ent_angles": torch.zeros(
                                   c["B"], c["T"], c["H"], c["L"], reference.num_pairs(c["n"]), dtype=c["dtype"])},
                               lambda c: r"ent_angles is only used with entangler='rzz' \(got entangler='cz'\); pass None"),
    "negative_checkpoint_every": (lambda c, kw: {"checkpoint_every": -1 - c["seed"] % 3},
                                  lambda c: rf"checkpoint_every must be >= 0 \(0 keeps no states\), got {-1 - c['seed'] % 3}"),
    "init_wrong_size": (lambda c, kw: {"init_state": torch.zeros(c["B"], c["H"], 2 ** c["n"] + 1, dtype=(
                            torch.complex64 if c["dtype"] == torch.float32 else torch.complex128))},
                        lambda c: rf"init_state must have shape \(B, H, 2\*\*n\) = \({c['B']}, {c['H']}, {2 ** c['n']}\)"),
}


@settings(FUZZ, max_examples=150)
@given(c=cases(), fault=st.sampled_from(sorted(INVALID)))
def test_invalid_inputs_raise_documented_errors(c, fault):
    if fault in ("negative_length", "length_past_end"):
        c["B"] = max(c["B"], 1)  # values can only be wrong when there are some
    _, kwargs = make_case(c, requires_grad=False)
    change, message = INVALID[fault]
    kwargs.update(change(c, kwargs))
    checkpoint_every = kwargs.pop("checkpoint_every", c["checkpoint_every"])
    with pytest.raises(RuntimeError, match=message(c)):
        qlam.ops.scan(**kwargs, checkpoint_every=checkpoint_every)


@settings(FUZZ, max_examples=10)
@given(extra=st.integers(1, 3), B=st.integers(0, 2), T=st.integers(0, 2), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_too_many_qubits_is_a_clear_error(extra, B, T, dtype):
    n = MAX_N + extra
    angles = torch.zeros(B, T, 1, 1, n, 3, dtype=dtype)
    with pytest.raises(RuntimeError, match=rf"n_qubits \(angles.shape\[4\]\) must be in \[1, {MAX_N}\] for the fused "
                                           rf"kernels, got {n}; qlam.reference.scan simulates larger states"):
        qlam.ops.scan(angles)


# ---------------------------------------------------------------- non-finite inputs

@settings(FUZZ, max_examples=120)
@given(c=cases(max_batch=4), value=st.sampled_from([math.nan, math.inf, -math.inf]),
       where=st.sampled_from(["angles", "ent_angles", "init_state"]), pick=st.integers(0, 2**31 - 1),
       with_grads=st.booleans())
def test_non_finite_input_poisons_only_its_own_state(c, value, where, pick, with_grads):
    """A NaN/Inf enters state (b, h) at token t: that state's features are
    non-finite from t on (up to its length), zero after it; its final state is
    non-finite if t < length; every other state matches a run without the bad
    value, features, final state and gradients."""
    c.update(B=max(c["B"], 2), T=max(c["T"], 1), L=max(c["L"], 1), layout="contiguous", huge=None)
    if where == "ent_angles":
        c["entangler"] = "rzz"
        if reference.num_pairs(c["n"]) == 0:
            c["n"] = 2
    if where == "init_state":
        c["with_init"] = True
    B, T, H = c["B"], c["T"], c["H"]
    leaves, kwargs = make_case(c, requires_grad=with_grads)
    clean_leaves, clean_kwargs = make_case(c, requires_grad=with_grads)
    b, t, h = pick % B, (pick // B) % T, (pick // (B * T)) % H
    target = leaves[where]
    with torch.no_grad():
        if where == "init_state":
            t = 0
            target[b, h, pick % target.shape[-1]] = complex(value, 0.0)
        else:
            flat = target[b, t, h].view(-1)
            flat[pick % flat.numel()] = value
    lengths = kwargs["lengths"]
    length = T if lengths is None else int(lengths[b])
    features, final, grads = _run(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=c["checkpoint_every"]),
                                  leaves, kwargs, c["seed"])
    clean = _run(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=c["checkpoint_every"]),
                 clean_leaves, clean_kwargs, c["seed"])
    want = _run(reference.scan, *make_case(c, requires_grad=False, as_float64=True), c["seed"])
    tol = _tolerance(c["dtype"])
    _assert_close(clean[0], want[0], tol, "clean features")  # the clean run is right ...
    others = torch.ones(B, H, dtype=torch.bool)
    others[b, h] = False
    # ... and every other state is bit-for-bit what it was without the bad value
    assert torch.equal(features.transpose(1, 2)[others], clean[0].transpose(1, 2)[others])
    assert torch.equal(final[others], clean[1][others])
    poisoned = features[b, :, h]
    assert torch.equal(poisoned[:min(t, length)], clean[0][b, :min(t, length), h])
    assert not torch.isfinite(poisoned[t:length]).any()
    assert (poisoned[max(t, length):] == 0).all()
    if t < length:
        assert not torch.isfinite(final[b, h]).any()
    elif where == "init_state":  # length 0: the state passes through as it was given
        torch.testing.assert_close(final[b, h], leaves["init_state"][b, h].detach(), rtol=0, atol=0, equal_nan=True)
    else:  # a bad value past the sequence's end is never used
        assert torch.equal(final[b, h], clean[1][b, h])
    for name, g, g_clean in zip(leaves, grads, clean[2]):
        if name == "init_state":
            mask = others
        else:
            mask = others[:, None, :].expand(B, T, H)
        assert torch.equal(g[mask], g_clean[mask]), f"grad {name} of other states changed"
        own, own_clean = (g[b, h], g_clean[b, h]) if name == "init_state" else (g[b, :, h], g_clean[b, :, h])
        if t < length:  # the bad value was used: all of that state's gradients are non-finite
            assert not torch.isfinite(own if name == "init_state" else own[:length]).any(), f"grad {name}"
        else:  # never read (or a state that never ran): nothing changes
            assert torch.equal(own, own_clean), f"grad {name} of an unused bad value"


@pytest.mark.parametrize("chunk", [None, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_finished_states_are_kept_bit_for_bit(value, dtype, chunk):
    """Regression: the CPU kernel runs masked lanes (sequences past their
    length) through identity gates, which spread a NaN/Inf amplitude over the
    whole state (0 * Inf = NaN). A state must stay exactly as it was once its
    sequence has ended: final state, checkpoints and gradient pass-through."""
    B, T, H, n = 5, 4, 2, 3
    g = torch.Generator().manual_seed(0)
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    angles = (torch.rand(B, T, H, 2, n, 3, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)
    init = torch.randn(B, H, 2**n, generator=g, dtype=torch.complex128).to(cdtype)
    init[:, 0, 3] = value  # head 0 of every sequence is poisoned, head 1 is clean
    lengths = torch.tensor([4, 0, 1, 3, 0])
    with chunk_tokens(chunk):
        features, final, checkpoints = torch.ops.qlam.scan_forward(angles, None, init, lengths, "cz", True, 1)
        init_leaf = init.clone().requires_grad_(True)
        _, final2 = qlam.ops.scan(angles, None, init_leaf, lengths, "cz", True, checkpoint_every=1)
        grad_final = torch.randn(final2.shape, generator=g, dtype=torch.complex128).to(cdtype)
        (grad_init,) = torch.autograd.grad(final2, init_leaf, grad_final)
    want = reference.scan(angles, None, init, lengths, "cz", True)
    exact = dict(rtol=0, atol=0, equal_nan=True)
    for b, length in enumerate(lengths.tolist()):
        if length == 0:  # never started: the state, its checkpoints and its gradient pass through
            torch.testing.assert_close(final[b], init[b], **exact)
            torch.testing.assert_close(checkpoints[b], init[b][:, None].expand(H, T, 2**n), **exact)
            torch.testing.assert_close(grad_init[b], grad_final[b], **exact)
        else:  # later checkpoints repeat the final state
            torch.testing.assert_close(checkpoints[b, :, length - 1:], final[b][:, None].expand(H, T - length + 1, 2**n),
                                       **exact)
        assert (features[b, length:] == 0).all()
    # The clean heads match the reference; the poisoned ones that ran are non-finite.
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(final[:, 1], want[1][:, 1], rtol=0, atol=tol)
    torch.testing.assert_close(features[:, :, 1], want[0][:, :, 1], rtol=0, atol=tol)
    ran = lengths > 0
    assert not torch.isfinite(final[ran, 0]).any()
