"""The register program of csrc/register_program.h (issue 15: amplitudes in lane registers, G lanes
per state, exchanges by xor-shuffles) run on the CPU through an exact emulation of its lanes and of
__shfl_xor_sync (csrc/cpu/register_emulation.cpp). Its forward (features, final state, checkpoints)
and its backward by uncomputation (the angle, rzz-angle and initial-state gradients of a linear loss
of the outputs) must agree with the reference for every lanes_per_state G, including G > 2**n (fewer
lanes used)."""
import pytest
import torch

from qlam import reference
from scan_cases import Case, make_inputs

LANES = (1, 2, 4, 8, 16, 32)
# float32 gradients (scale ~10) against the float64 reference: at most 1.1e-5 measured for every G, as
# state_program.h's backward (torch.ops.qlam._warp_emulation_backward: 1.2e-5 on the same cases).
FLOAT32_GRAD_ATOL = 5e-5


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


# ---------------------------------------------------------------- backward

def backward(args, output_grads, final, checkpoints, lanes, checkpoint_every):
    gf, gs = output_grads
    return torch.ops.qlam._register_emulation_backward(
        gf, gs, args["angles"], args["ent_angles"], final, checkpoints, args["lengths"], args["entangler"],
        args["pair_features"], checkpoint_every, lanes)


def output_grads(args, dtype=torch.float64, seed=1):
    """Random gradients of the features (B, T, H, K) and of the final state (B, H, 2**n)."""
    B, T, H, _, n, _ = args["angles"].shape
    g = torch.Generator().manual_seed(seed)
    gf = torch.randn(B, T, H, reference.num_features(n, args["pair_features"]), generator=g, dtype=torch.float64)
    gs = torch.randn(B, H, 2**n, generator=g, dtype=torch.complex128)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return gf.to(dtype), gs.to(cdtype)


def reference_grads(args, gf, gs):
    """(grad_angles, grad_ent_angles, grad_init_state) of loss = (features * gf).sum() + (final.conj() * gs)
    .real.sum() (a None gradient leaves its term out) by autograd through qlam.reference.scan in float64, in the
    op's convention: an empty grad_ent_angles without rzz. init_state None is |0...0>, differentiated all the same."""
    a = {k: (v.detach().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
         for k, v in args.items()}
    B, _, H, _, n, _ = a["angles"].shape
    if a["init_state"] is None:
        a["init_state"] = torch.zeros(B, H, 2**n, dtype=torch.complex128)
        a["init_state"][..., 0] = 1
    a["init_state"] = a["init_state"].detach().to(torch.complex128)
    inputs = [a["angles"], a["init_state"]] + ([a["ent_angles"]] if a["ent_angles"] is not None else [])
    for x in inputs:
        x.requires_grad_(True)
    features, final = reference.scan(**a)
    loss = features.new_zeros(())
    if gf is not None:
        loss = loss + (features * gf.double()).sum()
    if gs is not None:
        loss = loss + (final.conj() * gs.to(torch.complex128)).real.sum()
    grads = torch.autograd.grad(loss, inputs, allow_unused=True) if loss.requires_grad else [None] * len(inputs)
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]
    ent = grads[2] if a["ent_angles"] is not None else a["angles"].new_zeros(0)
    return grads[0], ent, grads[1]


def assert_grads_match(got, want, atol):
    for name, x, y in zip(("grad_angles", "grad_ent_angles", "grad_init_state"), got, want):
        assert x.shape == y.shape, f"{name}: shape {tuple(x.shape)}, want {tuple(y.shape)}"
        torch.testing.assert_close(x.to(y.dtype), y, atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


def forward_backward(args, grads, lanes, checkpoint_every):
    """The register program's forward (its final state and checkpoints saved), then its backward."""
    _, final, checkpoints = forward(args, lanes, checkpoint_every)
    return backward(args, grads, final, checkpoints, lanes, checkpoint_every)


_BACKWARD_REFERENCE = {}  # each grid case's inputs, output gradients and reference gradients, once for its six G


def grid_backward_inputs(n, entangler, pair_features):
    key = (n, entangler, pair_features)
    if key not in _BACKWARD_REFERENCE:
        args, _ = grid_inputs(n, entangler, pair_features)
        grads = output_grads(args)
        _BACKWARD_REFERENCE[key] = args, grads, reference_grads(args, *grads)
    return _BACKWARD_REFERENCE[key]


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("pair_features", [False, True], ids=["single", "pairs"])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
@pytest.mark.parametrize("n", range(1, 9))
def test_register_backward_matches_reference(n, entangler, pair_features, lanes):
    """The grid of the forward test: lengths T, 0 and 3 < T, a random initial state, checkpoints every 2 tokens
    (read back between uncomputed tokens, under the labelling the inverse cnot rings have reached), gradients of
    the features and of the final state."""
    args, grads, want = grid_backward_inputs(n, entangler, pair_features)
    assert_grads_match(forward_backward(args, grads, lanes, 2), want, atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("missing", ["grad_features", "grad_final_state", "both"])
@pytest.mark.parametrize("n,entangler", [(2, "rzz"), (5, "cnot"), (8, "rzz")])
def test_backward_without_some_output_grads(n, entangler, missing, lanes):
    """grad_features and/or grad_final_state None (the op reads them as zeros)."""
    case = Case(B=2, T=4, H=2, L=2, n=n, entangler=entangler, pair_features=True)
    args = make_inputs(case)
    gf, gs = output_grads(args)
    gf = None if missing in ("grad_features", "both") else gf
    gs = None if missing in ("grad_final_state", "both") else gs
    assert_grads_match(forward_backward(args, (gf, gs), lanes, 0), reference_grads(args, gf, gs), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n", [1, 3, 8])
def test_backward_zero_initial_state(n, lanes):
    """init_state None and no lengths; grad_init_state is still the gradient at |0...0>."""
    case = Case(B=2, T=4, H=1, L=2, n=n, entangler="cnot", pair_features=True, with_init=False,
                with_lengths=False)
    args = make_inputs(case)
    grads = output_grads(args)
    assert_grads_match(forward_backward(args, grads, lanes, 3), reference_grads(args, *grads), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,entangler", [(3, "cnot"), (7, "cnot"), (6, "rzz")])
def test_backward_reads_every_checkpoint(n, entangler, lanes):
    """checkpoint_every = 1: every token's state comes from a checkpoint, so in float64 the saved final state is
    never read (garbage in its place changes nothing); and no checkpoints at all (pure uncomputation)."""
    case = Case(B=3, T=5, H=2, L=2, n=n, entangler=entangler, pair_features=True)
    args = make_inputs(case)
    args["lengths"] = torch.tensor([5, 0, 2])
    grads = output_grads(args)
    want = reference_grads(args, *grads)
    _, final, checkpoints = forward(args, lanes, 1)
    garbage = torch.randn(final.shape, dtype=final.dtype, generator=torch.Generator().manual_seed(7))
    garbage[1] = final[1]  # the empty sequence reads nothing but its final state's gradient
    assert_grads_match(backward(args, grads, garbage, checkpoints, lanes, 1), want, atol=1e-10)
    assert_grads_match(forward_backward(args, grads, lanes, 0), want, atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
def test_backward_large_state(lanes):
    """n = 10 (R = 32..1024 registers a lane), rzz with pair features."""
    case = Case(B=2, T=2, H=1, L=1, n=10, entangler="rzz", pair_features=True)
    args = make_inputs(case)
    args["lengths"] = torch.tensor([2, 1])
    grads = output_grads(args)
    assert_grads_match(forward_backward(args, grads, lanes, 1), reference_grads(args, *grads), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("entangler", ["cnot", "rzz"])
def test_backward_noncontiguous_inputs(entangler, lanes):
    case = Case(B=3, T=4, H=2, L=2, n=5, entangler=entangler, pair_features=True, noncontiguous=True)
    args = make_inputs(case)
    gf, gs = output_grads(args)
    grads = (gf.transpose(0, 1).contiguous().transpose(0, 1), gs.transpose(0, 1).contiguous().transpose(0, 1))
    assert not grads[0].is_contiguous() and not grads[1].is_contiguous()
    assert_grads_match(forward_backward(args, grads, lanes, 2), reference_grads(args, gf, gs), atol=1e-10)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,entangler", [(3, "cnot"), (6, "rzz"), (8, "cnot"), (8, "cz")])
def test_backward_float32(n, entangler, lanes):
    """float32 (complex64 states; the uncomputed state's norm restored once per token) against the float64
    reference."""
    case = Case(B=3, T=6, H=2, L=2, n=n, entangler=entangler, pair_features=True)
    args64 = make_inputs(case)
    args32 = make_inputs(case, dtype=torch.float32)
    grads32 = output_grads(args32, dtype=torch.float32)
    got = forward_backward(args32, grads32, lanes, 2)
    assert got[0].dtype == torch.float32 and got[2].dtype == torch.complex64
    assert_grads_match(got, reference_grads(args64, *grads32), atol=FLOAT32_GRAD_ATOL)


@pytest.mark.parametrize("lanes", [1, 8, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_norm_restoration_as_today(dtype, lanes):
    """In float32, after each uncomputed token the state is scaled back to the norm of the saved final state, as
    state_program.h's backward does (torch.ops.qlam._warp_emulation_backward); float64 restores nothing. Saved
    checkpoints of twice the norm show it: the tokens after a checkpoint see it scaled back in float32 only."""
    case = Case(B=2, T=6, H=2, L=2, n=5, entangler="cnot", pair_features=True, with_lengths=False)
    args = make_inputs(case, dtype=dtype)
    grads = output_grads(args, dtype=dtype)
    _, final, checkpoints = forward(args, lanes, 3)
    doubled = checkpoints * 2
    got = backward(args, grads, final, doubled, lanes, 3)
    today = torch.ops.qlam._warp_emulation_backward(*grads, args["angles"], None, final, doubled, None, "cnot",
                                                    True, 3)
    assert_grads_match(got, today, atol=FLOAT32_GRAD_ATOL if dtype == torch.float32 else 1e-10)
    plain = backward(args, grads, final, checkpoints, lanes, 3)
    assert (got[0] - plain[0]).abs().max().item() > 0.1  # the doubled checkpoints are read


@pytest.mark.parametrize("lanes", [1, 32])
def test_backward_empty_sequence(lanes):
    """T = 0: no angle gradients, and grad_init_state is grad_final_state."""
    args = make_inputs(Case(B=2, T=0, H=1, L=1, n=4, with_lengths=False))
    grads = output_grads(args)
    ga, ge, gi = forward_backward(args, grads, lanes, 1)
    assert ga.shape == (2, 0, 1, 1, 4, 3) and ge.numel() == 0
    torch.testing.assert_close(gi, grads[1], atol=0, rtol=0)


@pytest.mark.parametrize("lanes", [0, -4, 3, 6, 64])
def test_backward_bad_lanes_per_state(lanes):
    args = make_inputs(Case(B=1, T=2, H=1, L=1, n=3))
    _, final, checkpoints = forward(args, 1)
    with pytest.raises(RuntimeError, match=r"_register_emulation_backward: lanes_per_state must be a power of two "
                                           r"from 1 to 32 .* got " + str(lanes)):
        backward(args, output_grads(args), final, checkpoints, lanes, 0)


def test_meta_shapes():
    """The Meta kernels (torch.compile, export): the outputs' shapes without running anything."""
    args = make_inputs(Case(B=2, T=3, H=2, L=2, n=5, entangler="rzz", pair_features=True))
    meta = {k: (v.to("meta") if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    features, final, checkpoints = forward(meta, 4, 1)
    assert features.shape == (2, 3, 2, 51) and final.shape == (2, 2, 32) and checkpoints.shape == (2, 2, 3, 32)
    grads = [x.to("meta") for x in output_grads(args)]
    ga, ge, gi = backward(meta, grads, final, checkpoints, 4, 1)
    assert ga.shape == args["angles"].shape and ge.shape == args["ent_angles"].shape and gi.shape == (2, 2, 32)
    assert ga.device.type == "meta" and gi.dtype == torch.complex128
