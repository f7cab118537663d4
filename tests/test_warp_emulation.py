"""The CUDA kernels' per-state program (csrc/state_program.h, 32 lanes per
state as on a warp) run on the CPU through emulated lanes: it must agree
with the reference, so the CUDA logic is tested even without a GPU."""
import pytest
import torch

from qlam import reference
from scan_cases import Case, make_inputs

CASES = [
    Case(B=2, T=4, H=2, L=2, n=n, entangler=e, pair_features=p)
    for n in (1, 2, 3, 6) for e in reference.ENTANGLERS for p in (False, True)
] + [Case(B=1, T=2, H=1, L=1, n=11, entangler="rzz", pair_features=True, with_lengths=False),
     Case(B=3, T=5, H=1, L=1, n=5, noncontiguous=True)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_emulated_warp_program_matches_reference(case):
    args = make_inputs(case, requires_grad=True)
    a = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    pos = (a["angles"], a["ent_angles"], a["init_state"], a["lengths"], a["entangler"], a["pair_features"])
    features, final, checkpoints = torch.ops.qlam._warp_emulation_forward(*pos, 3)
    want_features, want_final = reference.scan(**args)
    torch.testing.assert_close(features, want_features.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(final, want_final.detach(), atol=1e-10, rtol=0)

    gf, gs = torch.randn_like(features), torch.randn_like(final)
    grads = torch.ops.qlam._warp_emulation_backward(gf, gs, a["angles"], a["ent_angles"], final, checkpoints,
                                                    a["lengths"], a["entangler"], a["pair_features"], 3)
    loss = (want_features * gf).sum() + (want_final.conj() * gs).real.sum()
    inputs = [args["angles"], args["init_state"]] + ([args["ent_angles"]] if args["ent_angles"] is not None else [])
    want = torch.autograd.grad(loss, inputs, allow_unused=True)
    torch.testing.assert_close(grads[0], want[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(grads[2], want[1], atol=1e-10, rtol=0)
    if args["ent_angles"] is not None and want[2] is not None:
        torch.testing.assert_close(grads[1], want[2], atol=1e-10, rtol=0)
