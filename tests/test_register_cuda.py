"""Issue 15's register program launched on a GPU (qlam::_register_forward, csrc/cuda/register_cuda.cu):
its forward must agree with the reference in float64 and with its own CPU emulation, for every
lanes_per_state the kernel supports. Needs a CUDA GPU; scripts/gpu_check.sh runs it."""
import pytest
import torch

from qlam import reference
from scan_cases import DEVICES, Case, make_inputs

pytestmark = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU and a build with the CUDA kernels")

# Most amplitudes per lane the kernel keeps in registers (register_cuda.cu, kMaxRegisters).
MAX_REGISTERS = {torch.float32: 16, torch.float64: 4}


def run(args, lanes, checkpoint_every=2, op=None):
    op = op or torch.ops.qlam._register_forward
    return op(args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
              args["pair_features"], checkpoint_every, lanes)


def lanes_for(n, dtype):
    """Every lanes_per_state the kernel accepts at n (0: the host's choice)."""
    return [0] + [g for g in (1, 2, 4, 8, 16, 32) if 2**n // min(g, 2**n) <= MAX_REGISTERS[dtype]]


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
    for lanes in lanes_for(n, dtype):
        features, final, checkpoints = run(args, lanes)
        torch.testing.assert_close(features.cpu().double(), want_features, atol=tol, rtol=0)
        torch.testing.assert_close(final.cpu().to(want_final.dtype), want_final, atol=tol, rtol=0)
        if lanes:  # the emulation runs the same program with the same lanes on the CPU
            cpu = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
            emulated = run(cpu, lanes, op=torch.ops.qlam._register_emulation_forward)
            torch.testing.assert_close(checkpoints.cpu(), emulated[2], atol=tol, rtol=0)


def test_register_kernel_refuses_bad_lanes_and_states_too_large_for_registers():
    args = make_inputs(Case(B=1, T=2, H=1, L=1, n=8), dtype=torch.float32, device="cuda")
    with pytest.raises(RuntimeError, match="lanes_per_state must be 0"):
        run(args, 3)
    with pytest.raises(RuntimeError, match="amplitudes per lane"):
        run(args, 2)  # 128 amplitudes per lane
