"""The register program of csrc/register_program.h (issue 15: amplitudes in lane registers, G lanes
per state, exchanges by xor-shuffles) run on the CPU through an exact emulation of its lanes and of
__shfl_xor_sync (csrc/cpu/register_emulation.cpp). Its forward (features, final state, checkpoints)
must agree with the reference for every lanes_per_state G, including G > 2**n (fewer lanes used)."""
import pytest
import torch

from qlam import reference
from scan_cases import Case, make_inputs

LANES = (1, 2, 4, 8, 16, 32)


def forward(args, lanes, checkpoint_every=0):
    return torch.ops.qlam._register_emulation_forward(
        args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
        args["pair_features"], checkpoint_every, lanes)


def reference_run(args, checkpoint_every):
    """Features, final state and the states after every checkpoint_every tokens, from qlam.reference
    (a sequence that has stopped keeps its last state, so its later checkpoints repeat it)."""
    a = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    features, final = reference.scan(**a)
    B, T, H = a["angles"].shape[:3]
    states = []
    for done in range(checkpoint_every, T + 1, checkpoint_every) if checkpoint_every else ():
        cut = dict(a, angles=a["angles"][:, :done],
                   ent_angles=None if a["ent_angles"] is None else a["ent_angles"][:, :done],
                   lengths=None if a["lengths"] is None else a["lengths"].clamp(max=done))
        states.append(reference.scan(**cut)[1])
    checkpoints = torch.stack(states, dim=2) if states else final.new_zeros(B, H, 0, final.shape[-1])
    return features, final, checkpoints


def assert_matches(got, want, atol):
    for name, x, y in zip(("features", "final_state", "checkpoints"), got, want):
        assert x.shape == y.shape, f"{name}: shape {tuple(x.shape)}, want {tuple(y.shape)}"
        torch.testing.assert_close(x.to(y.dtype), y, atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


_REFERENCE = {}  # each grid case's inputs and reference, computed once for its six G


def grid_inputs(n, entangler, pair_features):
    key = (n, entangler, pair_features)
    if key not in _REFERENCE:
        case = Case(B=3, T=5, H=2, L=2, n=n, entangler=entangler, pair_features=pair_features)
        args = make_inputs(case)
        args["lengths"] = torch.tensor([case.T, 0, 3])
        _REFERENCE[key] = args, reference_run(args, 2)
    return _REFERENCE[key]


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("pair_features", [False, True], ids=["single", "pairs"])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
@pytest.mark.parametrize("n", range(1, 9))
def test_register_program_matches_reference(n, entangler, pair_features, lanes):
    """Every G, n = 1..8, every entangler, pair features on and off; lengths T, 0 and 3 < T; a random
    initial state; checkpoints every 2 tokens (the empty and the short sequence repeat their state)."""
    args, want = grid_inputs(n, entangler, pair_features)
    assert_matches(forward(args, lanes, 2), want, atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_zero_initial_state(n, lanes):
    """init_state None starts from |0...0> (lane 0's register 0); no lengths means all T."""
    case = Case(B=2, T=4, H=1, L=2, n=n, entangler="cnot", pair_features=True, with_init=False,
                with_lengths=False)
    args = make_inputs(case)
    assert_matches(forward(args, lanes, 3), reference_run(args, 3), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,entangler", [(10, "rzz"), (10, "cnot"), (12, "cz")])
def test_large_states(n, entangler, lanes):
    """n = 10 (R = 32..1024 registers a lane) and n = 12, the fused kernels' maximum."""
    case = Case(B=2, T=2, H=1, L=1, n=n, entangler=entangler, pair_features=True)
    args = make_inputs(case)
    args["lengths"] = torch.tensor([2, 1])
    assert_matches(forward(args, lanes, 1), reference_run(args, 1), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("entangler", ["cnot", "rzz"])
def test_noncontiguous_inputs(entangler, lanes):
    case = Case(B=3, T=4, H=2, L=2, n=5, entangler=entangler, pair_features=True, noncontiguous=True)
    args = make_inputs(case)
    assert not args["angles"].is_contiguous() and not args["init_state"].is_contiguous()
    assert_matches(forward(args, lanes, 2), reference_run(args, 2), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,entangler", [(3, "cnot"), (6, "rzz"), (8, "cnot"), (8, "cz")])
def test_float32(n, entangler, lanes):
    """float32 (complex64 state, the norm restored once per token) against the float64 reference."""
    case = Case(B=3, T=6, H=2, L=2, n=n, entangler=entangler, pair_features=True)
    args64 = make_inputs(case)
    args32 = make_inputs(case, dtype=torch.float32)
    got = forward(args32, lanes, 2)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.complex64
    assert_matches(got, reference_run(args64, 2), atol=2e-5)


@pytest.mark.parametrize("lanes", [1, 8, 32])
def test_float32_norm_is_restored(lanes):
    """float32 rounding walks the norm away (~2e-5 after 4000 tokens of 12 gates without the per-token
    restore, measured); the program scales it back each token, as today's kernels do (~1e-7)."""
    args = make_inputs(Case(B=4, T=4000, H=1, L=2, n=6, with_lengths=False), dtype=torch.float32)
    _, final, _ = forward(args, lanes)
    norm = final.abs().pow(2).sum(-1).double()
    want = args["init_state"].abs().pow(2).sum(-1).double()
    assert (norm - want).abs().max().item() < 1e-6


@pytest.mark.parametrize("lanes", [1, 32])
def test_empty_sequence(lanes):
    """T = 0: no features, the initial state back, no checkpoints."""
    args = make_inputs(Case(B=2, T=0, H=1, L=1, n=4, with_lengths=False))
    features, final, checkpoints = forward(args, lanes, 1)
    assert features.shape == (2, 0, 1, 12) and checkpoints.shape == (2, 1, 0, 16)
    torch.testing.assert_close(final, args["init_state"], atol=0, rtol=0)


@pytest.mark.parametrize("lanes", [0, -4, 3, 6, 64])
def test_bad_lanes_per_state(lanes):
    args = make_inputs(Case(B=1, T=2, H=1, L=1, n=3))
    with pytest.raises(RuntimeError, match=r"lanes_per_state must be a power of two from 1 to 32 .* got "
                                           + str(lanes)):
        forward(args, lanes)
