"""The fused kernels agree with qlam.reference in float64: features, final
state and every gradient, over many shapes and options."""
import itertools
import math

import pytest
import torch

import qlam
from qlam import reference
from scan_cases import DEVICES, Case, assert_close_results, make_inputs, value_and_grads

CASES = [
    Case(),
    Case(T=1),
    Case(T=7, H=1),
    Case(B=3, T=9, H=3, L=1, n=1),
    Case(B=1, T=4, H=2, L=3, n=2),
    Case(B=2, T=3, H=1, L=1, n=7),
    Case(B=1, T=2, H=1, L=1, n=12, with_lengths=False),
    Case(B=1, T=2, H=1, L=1, n=12, pair_features=True, entangler="rzz", with_lengths=False),
    Case(B=4, T=6, H=2, L=2, n=4, with_init=False),
    Case(B=3, T=5, H=2, L=2, n=5, noncontiguous=True),
    Case(B=2, T=0, H=2, L=2, n=3, with_lengths=False),
    Case(B=0, T=3, H=2, L=2, n=3, with_lengths=False),
    Case(B=2, T=3, H=2, L=0, n=3),
]
# Every entangler with and without pair features, on a few of the shapes.
MATRIX = [
    Case(B=c.B, T=c.T, H=c.H, L=c.L, n=c.n, entangler=e, pair_features=p, with_init=c.with_init,
         with_lengths=c.with_lengths, noncontiguous=c.noncontiguous)
    for c, e, p in itertools.product(CASES, reference.ENTANGLERS, (False, True))
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", MATRIX, ids=str)
def test_kernel_matches_reference_float64(case, device):
    args = make_inputs(case, device=device, requires_grad=True)
    got = value_and_grads(qlam.ops.scan, args)
    want = value_and_grads(reference.scan, args)
    assert_close_results(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", [Case(n=4, entangler=e, pair_features=True) for e in reference.ENTANGLERS], ids=str)
def test_kernel_matches_reference_float32(case):
    args32 = make_inputs(case, dtype=torch.float32, requires_grad=True)
    args64 = make_inputs(case, dtype=torch.float64, requires_grad=True)
    got = value_and_grads(qlam.ops.scan, args32)
    want = value_and_grads(reference.scan, args64)
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a.to(b.dtype), b, atol=2e-5, rtol=0)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a.to(b.dtype), b, atol=2e-4, rtol=0)


@pytest.mark.parametrize("every", [1, 2, 3, 5, 100])
@pytest.mark.parametrize("entangler", ["cnot", "rzz"])
def test_checkpointed_scan_matches_plain_scan(every, entangler):
    case = Case(B=3, T=10, H=2, L=2, n=4, entangler=entangler)
    args = make_inputs(case, requires_grad=True)
    plain = value_and_grads(qlam.ops.scan, args)
    ckpt = value_and_grads(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=every), args)
    assert_close_results(ckpt, plain, atol=1e-12, rtol=1e-12)


def test_padding_positions_keep_state_and_give_zero_features():
    case = Case(B=3, T=6, n=3)
    args = make_inputs(case)
    args["lengths"] = torch.tensor([6, 2, 0])
    features, final = qlam.ops.scan(**args)
    assert features[1, 2:].abs().max() == 0 and features[2].abs().max() == 0
    torch.testing.assert_close(final[2], args["init_state"][2])  # length 0: the state is untouched
    short = {**args, "angles": args["angles"][1:2, :2], "init_state": args["init_state"][1:2], "lengths": None}
    f_short, final_short = qlam.ops.scan(**short)
    torch.testing.assert_close(final[1:2], final_short)
    torch.testing.assert_close(features[1:2, :2], f_short)


def test_features_of_the_initial_state_are_its_paulis():
    # No gates at all (L = 0): the features are the expectations of |0...0>: <Z> = 1, the rest 0.
    args = make_inputs(Case(B=1, T=2, H=1, L=0, n=3, with_init=False, with_lengths=False, pair_features=True))
    features, final = qlam.ops.scan(**args)
    expected = torch.zeros(3 * 3 + 9 * 2, dtype=torch.float64)
    expected[2::3][:3] = 1  # <Z_q>
    expected[9 + 8] = expected[9 + 9 + 8] = 1  # <Z_q Z_q+1>
    torch.testing.assert_close(features[0, 0, 0], expected)
    torch.testing.assert_close(final[0, 0, 0], torch.tensor(1, dtype=torch.complex128))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("pair_features", [False, True])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
def test_many_state_groups(entangler, pair_features, dtype):
    # 111 states: several SIMD lane groups of the CPU kernel (16 float32 or 8 float64 states) and a
    # partial last one, with sequences of every length.
    case = Case(B=37, T=9, H=3, L=2, n=4, entangler=entangler, pair_features=pair_features)
    args = make_inputs(case, dtype=dtype, requires_grad=True)
    args64 = make_inputs(case, requires_grad=True)
    for a in (args, args64):
        a["lengths"][1:3] = torch.tensor([0, 1])
    got, want = value_and_grads(qlam.ops.scan, args), value_and_grads(reference.scan, args64)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for a, b in zip(got[:2] + tuple(got[2]), want[:2] + tuple(want[2])):
        torch.testing.assert_close(a.to(b.dtype), b, atol=10 * tol, rtol=tol)


@pytest.mark.parametrize("chunk", ["1", "4", "7"])
def test_token_chunks(chunk, monkeypatch):
    # The CPU kernel runs long sequences in chunks of tokens (scan_cpu.cpp); force short chunks
    # so that lengths end inside and at the edges of chunks and checkpoints cross them.
    monkeypatch.setenv("QLAM_CPU_CHUNK_TOKENS", chunk)
    case = Case(B=23, T=29, H=2, L=2, n=4, entangler="rzz", pair_features=True)
    args = make_inputs(case, requires_grad=True)
    args["lengths"][1:6] = torch.tensor([0, 1, 4, 7, 8])
    got = value_and_grads(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=3), args)
    want = value_and_grads(reference.scan, args)
    assert_close_results(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_small_and_large_calls_agree(dtype):
    # The CPU kernel builds the gates' cos/sin in a scalar loop for calls of at most 4096 angles
    # (trig_tables.cpp, kScalarTrigAngles) and above with its own vectorised sincos (float32) or
    # ATen's (float64): one sequence alone and the same sequence inside a batch of 40 take two
    # paths and must agree.
    case = Case(B=40, T=6, H=2, L=2, n=3, entangler="rzz", pair_features=True, with_lengths=False)
    args = make_inputs(case, dtype=dtype)
    assert args["angles"][:1].numel() <= 4096 < args["angles"].numel()
    alone = qlam.ops.scan(**{**args, "angles": args["angles"][:1], "ent_angles": args["ent_angles"][:1],
                             "init_state": args["init_state"][:1]})
    batch = qlam.ops.scan(**args)
    tol = dict(atol=1e-12, rtol=0) if dtype == torch.float64 else dict(atol=2e-6, rtol=0)
    torch.testing.assert_close(alone[0], batch[0][:1], **tol)
    torch.testing.assert_close(alone[1], batch[1][:1], **tol)


def in_float64(args: dict) -> dict:
    """The same inputs in float64 / complex128 (exactly: widening loses nothing), for the reference."""
    return {k: v.to(torch.complex128 if v.is_complex() else torch.float64)
            if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) else v
            for k, v in args.items()}


@pytest.mark.parametrize("chunk", ["1", "5", "0"])
@pytest.mark.parametrize("scale", [1.0, 40.0, 4000.0, 3e4, "token 4 x 3e4"])
def test_float32_trig_pass_over_chunks_and_angle_ranges(scale, chunk, monkeypatch):
    # float32 calls above kScalarTrigAngles build their trig tables in one fused pass over
    # (group, token) blocks with the kernel's own sincos (trig_tables.cpp): check its indexing
    # across chunk edges (QLAM_CPU_CHUNK_TOKENS; "0": the default chunks), over states that fill
    # the last SIMD group partly, and its range reduction for angles up to +-1e5, where some
    # blocks pass the fused limit (|angle / 2| > 8192) and compute in double instead.
    if chunk != "0":
        monkeypatch.setenv("QLAM_CPU_CHUNK_TOKENS", chunk)
    case = Case(B=7, T=11, H=3, L=2, n=3, entangler="rzz", pair_features=True)
    args = make_inputs(case, dtype=torch.float32)
    if isinstance(scale, str):  # one token's blocks beyond the fused limit, the others within
        scale = 3e4
        for name in ("angles", "ent_angles"):
            args[name][:, 4] *= scale
    else:
        args["angles"] = args["angles"] * scale
        args["ent_angles"] = args["ent_angles"] * scale
    assert args["angles"].numel() > 4096
    got, want = qlam.ops.scan(**args), reference.scan(**in_float64(args))
    # float32 sums phi + omega of size x are rounded by up to x * 6e-8 before any trig is taken
    # (the reference sums in float64), and those errors add up over the gates and tokens.
    tol = 2e-5 * max(1.0, scale / 20)
    torch.testing.assert_close(got[0].double(), want[0], atol=tol, rtol=0)
    torch.testing.assert_close(got[1].to(torch.complex128), want[1], atol=tol, rtol=0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_float32_trig_pass_with_a_nan_or_inf_angle(value):
    # A NaN or inf angle sends its (group, token) block of the fused pass to the double path: the
    # state that has it turns NaN from that token on, and every other state, in its block or not,
    # keeps the values of the reference.
    case = Case(B=7, T=11, H=3, L=2, n=3, entangler="rzz", pair_features=True)
    args = make_inputs(case, dtype=torch.float32)
    assert args["angles"].numel() > 4096  # the fused pass, not the small-call path
    clean = in_float64(args)
    args["angles"][2, 5, 1, 0, 1, 0] = value
    got, want = qlam.ops.scan(**args), reference.scan(**clean)
    bad = torch.zeros(case.B, case.H, dtype=torch.bool)
    bad[2, 1] = True
    assert got[0][2, 5:, 1].isnan().all() and not got[0][2, :5, 1].isnan().any()
    torch.testing.assert_close(got[0].transpose(1, 2)[~bad].double(), want[0].transpose(1, 2)[~bad],
                               atol=2e-5, rtol=0)


@pytest.mark.parametrize("lanes", ["narrow", "wide"])
@pytest.mark.parametrize("entangler", ["rzz", "cnot", "cz", "none"])
def test_narrow_and_wide_lane_groups(lanes, entangler, monkeypatch):
    # The CPU kernel runs calls of few states in narrow SIMD groups (lanes.h, kNarrowLanes: 8 float32 or
    # 4 float64 lanes) and others in 16 / 8 lanes; force each width on states that fill neither evenly,
    # with sequences ending at 0, inside and at the end, checkpoints, and gradients.
    monkeypatch.setenv("QLAM_CPU_LANES", lanes)
    case = Case(B=5, T=9, H=3, L=2, n=4, entangler=entangler, pair_features=True)
    args = make_inputs(case, requires_grad=True)
    args["lengths"][:3] = torch.tensor([0, 9, 4])
    got = value_and_grads(lambda **kw: qlam.ops.scan(**kw, checkpoint_every=4), args)
    want = value_and_grads(reference.scan, args)
    assert_close_results(got, want, atol=1e-10, rtol=1e-10)
