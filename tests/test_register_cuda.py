"""Issue 15's register program launched on a GPU (qlam::_register_forward and qlam::_register_backward,
csrc/cuda/register_cuda.cu): its forward must agree with the reference in float64 and with its own CPU
emulation, and its backward with the reference's autograd gradients, with today's CUDA backward
(qlam::scan_backward) and with its CPU emulation, for every lanes_per_state the kernels support. Needs a
CUDA GPU; scripts/gpu_check.sh runs it. Written without a GPU: these tests have not run yet."""
import pytest
import torch

import qlam
from qlam import reference
from scan_cases import DEVICES, Case, make_inputs
from test_warp_register_emulation import FLOAT32_GRAD_ATOL, assert_grads_match, output_grads, reference_grads

pytestmark = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU and a build with the CUDA kernels")

# Most amplitudes per lane the kernels keep in registers (register_program.h, kMaxForwardRegisters and
# kMaxBackwardRegisters).
MAX_REGISTERS = {torch.float32: 16, torch.float64: 4}
MAX_BACKWARD_REGISTERS = {torch.float32: 16, torch.float64: 8}


def run(args, lanes, checkpoint_every=2, op=None):
    op = op or torch.ops.qlam._register_forward
    return op(args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
              args["pair_features"], checkpoint_every, lanes)


def run_backward(args, grads, final, checkpoints, lanes, checkpoint_every, op=None):
    op = op or torch.ops.qlam._register_backward
    return op(*grads, args["angles"], args["ent_angles"], final, checkpoints, args["lengths"], args["entangler"],
              args["pair_features"], checkpoint_every, lanes)


def lanes_for(n, dtype, limits=MAX_REGISTERS):
    """Every lanes_per_state the kernel accepts at n, and 0 (the host's choice) where there is one."""
    fits = [g for g in (1, 2, 4, 8, 16, 32) if 2**n // min(g, 2**n) <= limits[dtype]]
    return ([0] if fits else []) + fits


def to_cpu(x):
    if isinstance(x, (tuple, list)):
        return type(x)(to_cpu(v) for v in x)
    if isinstance(x, dict):
        return {k: to_cpu(v) for k, v in x.items()}
    return x.cpu() if isinstance(x, torch.Tensor) else x


def to_cuda(x):
    if isinstance(x, (tuple, list)):
        return type(x)(to_cuda(v) for v in x)
    if isinstance(x, dict):
        return {k: to_cuda(v) for k, v in x.items()}
    return x.cuda() if isinstance(x, torch.Tensor) else x


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_register_kernel_matches_reference_and_emulation(n, entangler, dtype):
    case = Case(B=5, T=6, H=3, L=2, n=n, entangler=entangler, pair_features=n > 1)
    args64 = make_inputs(case)
    args64["lengths"] = torch.tensor([6, 0, 3, 6, 1])
    want_features, want_final = reference.scan(**args64)
    args = make_inputs(case, dtype=dtype, device="cuda")
    args["lengths"] = args64["lengths"].cuda()
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    if not lanes_for(n, dtype):  # float64 at n = 8: R = 8 > 4 even at G = 32, and 0 says so
        with pytest.raises(RuntimeError, match="amplitudes per lane; at most"):
            run(args, 0)
    for lanes in lanes_for(n, dtype):
        features, final, checkpoints = run(args, lanes)
        torch.testing.assert_close(features.cpu().double(), want_features, atol=tol, rtol=0)
        torch.testing.assert_close(final.cpu().to(want_final.dtype), want_final, atol=tol, rtol=0)
        if lanes:  # the emulation runs the same program with the same lanes on the CPU
            emulated = run(to_cpu(args), lanes, op=torch.ops.qlam._register_emulation_forward)
            torch.testing.assert_close(checkpoints.cpu(), emulated[2], atol=tol, rtol=0)


def test_register_kernel_refuses_bad_lanes_and_states_too_large_for_registers():
    args = make_inputs(Case(B=1, T=2, H=1, L=1, n=8), dtype=torch.float32, device="cuda")
    with pytest.raises(RuntimeError, match="lanes_per_state must be 0"):
        run(args, 3)
    with pytest.raises(RuntimeError, match="amplitudes per lane"):
        run(args, 2)  # 128 amplitudes per lane


# ---------------------------------------------------------------- backward

_BACKWARD_CASES = {}  # (n, entangler, dtype): inputs on the GPU, output gradients, reference gradients


def backward_case(n, entangler, dtype):
    """B = 5 sequences of lengths 6, 0, 3, 6, 1 (T = 6), a random initial state, pair features from n = 2;
    the reference gradients by float64 autograd from the very output gradients the kernels see."""
    key = (n, entangler, dtype)
    if key not in _BACKWARD_CASES:
        case = Case(B=5, T=6, H=3, L=2, n=n, entangler=entangler, pair_features=n > 1)
        lengths = torch.tensor([6, 0, 3, 6, 1])
        args64, args = make_inputs(case), make_inputs(case, dtype=dtype, device="cuda")
        args64["lengths"], args["lengths"] = lengths, lengths.cuda()
        grads = output_grads(args64, dtype=dtype)
        _BACKWARD_CASES[key] = args, to_cuda(grads), reference_grads(args64, *grads)
    return _BACKWARD_CASES[key]


def saved_forward(args, checkpoint_every):
    """The final state and checkpoints the backward reads, from today's CUDA forward (any n, any dtype)."""
    _, final, checkpoints = torch.ops.qlam.scan_forward(args["angles"], args["ent_angles"], args["init_state"],
                                                        args["lengths"], args["entangler"], args["pair_features"],
                                                        checkpoint_every)
    return final, checkpoints


@pytest.mark.parametrize("checkpoint_every", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_register_backward_matches_reference_today_and_emulation(n, entangler, dtype, checkpoint_every):
    """Every G the backward accepts (and 0): against the float64 reference, today's CUDA backward (the same
    float32 norm restoration) and the CPU emulation of the same program with the same lanes."""
    args, grads, want = backward_case(n, entangler, dtype)
    tol = 1e-10 if dtype == torch.float64 else FLOAT32_GRAD_ATOL
    final, checkpoints = saved_forward(args, checkpoint_every)
    today = to_cpu(torch.ops.qlam.scan_backward(*grads, args["angles"], args["ent_angles"], final, checkpoints,
                                                args["lengths"], args["entangler"], args["pair_features"],
                                                checkpoint_every))
    lanes_list = lanes_for(n, dtype, MAX_BACKWARD_REGISTERS)
    assert lanes_list, f"the backward keeps no G at n = {n}, {dtype}"
    for lanes in lanes_list:
        got = run_backward(args, grads, final, checkpoints, lanes, checkpoint_every)
        assert got[0].dtype == dtype and got[0].is_cuda
        got = to_cpu(got)
        assert_grads_match(got, want, atol=tol)
        assert_grads_match(got, today, atol=tol)
        if lanes:  # the emulation runs the same program with the same lanes on the CPU
            emulated = run_backward(to_cpu(args), to_cpu(grads), final.cpu(), checkpoints.cpu(), lanes,
                                    checkpoint_every, op=torch.ops.qlam._register_emulation_backward)
            assert_grads_match(got, emulated, atol=tol)


@pytest.mark.parametrize("missing", ["grad_features", "grad_final_state", "both"])
@pytest.mark.parametrize("n,entangler", [(2, "rzz"), (5, "cnot"), (8, "rzz")])
def test_register_backward_without_some_output_grads(n, entangler, missing):
    """grad_features and/or grad_final_state None (the kernel reads them as zeros), no lengths, no initial
    state (|0...0>), float64."""
    case = Case(B=2, T=4, H=2, L=2, n=n, entangler=entangler, pair_features=True, with_init=False,
                with_lengths=False)
    args = make_inputs(case)
    gf, gs = output_grads(args)
    gf = None if missing in ("grad_features", "both") else gf
    gs = None if missing in ("grad_final_state", "both") else gs
    want = reference_grads(args, gf, gs)
    args = to_cuda(args)
    final, checkpoints = saved_forward(args, 3)
    for lanes in lanes_for(n, torch.float64, MAX_BACKWARD_REGISTERS):
        got = run_backward(args, to_cuda((gf, gs)), final, checkpoints, lanes, 3)
        assert_grads_match(to_cpu(got), want, atol=1e-10)


@pytest.mark.parametrize("lanes", [0, 32])
def test_register_backward_largest_float32_state(lanes):
    """n = 9 in float32: R = 16 at G = 32, the most registers the backward keeps (0 picks G = 32)."""
    case = Case(B=2, T=3, H=1, L=2, n=9, entangler="rzz", pair_features=True)
    args64 = make_inputs(case)
    args64["lengths"] = torch.tensor([3, 2])
    args = make_inputs(case, dtype=torch.float32, device="cuda")
    args["lengths"] = args64["lengths"].cuda()
    grads = to_cuda(output_grads(args, dtype=torch.float32))
    final, checkpoints = saved_forward(args, 2)
    got = run_backward(args, grads, final, checkpoints, lanes, 2)
    assert_grads_match(to_cpu(got), reference_grads(args64, *to_cpu(grads)), atol=FLOAT32_GRAD_ATOL)


@pytest.mark.parametrize("lanes", [0, 2, 32])  # n = 4: 8, 8 and 1 amplitudes per lane (32 lanes: 16 used)
def test_register_backward_empty_sequences(lanes):
    """T = 0: no angle gradients, and grad_init_state is grad_final_state."""
    args = make_inputs(Case(B=2, T=0, H=1, L=1, n=4, with_lengths=False), device="cuda")
    grads = to_cuda(output_grads(to_cpu(args)))
    final, checkpoints = saved_forward(args, 1)
    ga, ge, gi = run_backward(args, grads, final, checkpoints, lanes, 1)
    assert ga.shape == (2, 0, 1, 1, 4, 3) and ge.numel() == 0
    torch.testing.assert_close(gi, grads[1], atol=0, rtol=0)


def test_register_backward_refuses_bad_lanes_and_states_too_large_for_registers():
    case = Case(B=1, T=2, H=1, L=1, n=8)
    for dtype, too_few in ((torch.float32, 8), (torch.float64, 16)):  # 32 and 16 amplitudes per lane
        args = make_inputs(case, dtype=dtype, device="cuda")
        grads = to_cuda(output_grads(to_cpu(args), dtype=dtype))
        final, checkpoints = saved_forward(args, 0)
        with pytest.raises(RuntimeError, match="_register_backward: lanes_per_state must be 0"):
            run_backward(args, grads, final, checkpoints, 3, 0)
        with pytest.raises(RuntimeError, match="amplitudes per lane; at most"):
            run_backward(args, grads, final, checkpoints, too_few, 0)


def test_register_backward_meta_shapes():
    """The Meta kernel (torch.compile, export): the outputs' shapes without running anything."""
    args = make_inputs(Case(B=2, T=3, H=2, L=2, n=5, entangler="rzz", pair_features=True), device="meta")
    grads = (torch.empty(2, 3, 2, 51, device="meta", dtype=torch.float64),
             torch.empty(2, 2, 32, device="meta", dtype=torch.complex128))
    final = torch.empty(2, 2, 32, device="meta", dtype=torch.complex128)
    checkpoints = torch.empty(2, 2, 3, 32, device="meta", dtype=torch.complex128)
    ga, ge, gi = run_backward(args, grads, final, checkpoints, 0, 1)
    assert ga.shape == (2, 3, 2, 2, 5, 3) and ge.shape == (2, 3, 2, 2, 5) and gi.shape == (2, 2, 32)


# ---------------------------------------------------------------- qlam.scan with QLAM_CUDA_PROGRAM=register


def public_scan_and_grads(args, out_weights):
    """qlam.ops.scan (autograd: scan_forward, then scan_backward) and the gradients of a fixed loss with respect
    to the angles, the rzz angles and the initial state."""
    leaves = [args[k].detach().requires_grad_() for k in ("angles", "ent_angles", "init_state")]
    features, final = qlam.ops.scan(*leaves, args["lengths"], args["entangler"], args["pair_features"],
                                    checkpoint_every=2)
    loss = (features * out_weights[0]).sum() + (final * out_weights[1]).real.sum()
    return (features.detach(), final.detach(), *torch.autograd.grad(loss, leaves))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [3, 6, 8, 10])
def test_public_scan_runs_the_register_program_when_selected(n, dtype, monkeypatch):
    """Under QLAM_CUDA_PROGRAM=register, qlam.scan's forward is the register kernel's (bit for bit, host-chosen
    lanes) where the state fits its registers and today's elsewhere, and its outputs and gradients agree with
    today's kernels' (float64 to 1e-10)."""
    case = Case(B=4, T=5, H=2, L=2, n=n, entangler="rzz", pair_features=True)
    args = make_inputs(case, dtype=dtype, device="cuda")
    g = torch.Generator().manual_seed(3)
    K = 3 * n + 9 * (n - 1)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    weights = (torch.randn(4, 5, 2, K, generator=g, dtype=torch.float64).to(dtype).cuda(),
               torch.randn(4, 2, 2**n, generator=g, dtype=torch.complex128).to(cdtype).cuda())
    monkeypatch.setenv("QLAM_CUDA_PROGRAM", "shared")
    want = public_scan_and_grads(args, weights)
    monkeypatch.setenv("QLAM_CUDA_PROGRAM", "register")
    got = public_scan_and_grads(args, weights)
    fits = 2**n <= 32 * MAX_REGISTERS[dtype]
    direct = (run(args, 0, checkpoint_every=2) if fits
              else torch.ops.qlam.scan_forward(*[args[k] for k in ("angles", "ent_angles", "init_state", "lengths",
                                                                    "entangler", "pair_features")], 2))
    torch.testing.assert_close(got[0], direct[0], atol=0, rtol=0)  # the kernel that was meant to run did
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for name, x, y in zip(("features", "final_state", "grad angles", "grad rzz angles", "grad init_state"), got, want):
        atol = tol if name in ("features", "final_state") or dtype == torch.float64 else FLOAT32_GRAD_ATOL
        torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=lambda m: f"{name}: {m}")


def test_public_scan_refuses_an_unknown_program(monkeypatch):
    args = make_inputs(Case(B=1, T=2, H=1, L=1, n=3), dtype=torch.float32, device="cuda")
    monkeypatch.setenv("QLAM_CUDA_PROGRAM", "fast")
    with pytest.raises(RuntimeError, match="QLAM_CUDA_PROGRAM must be 'shared'.*or 'register'.*got 'fast'"):
        qlam.ops.scan(**args)
