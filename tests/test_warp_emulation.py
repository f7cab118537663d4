"""The CUDA kernels' per-state program (csrc/state_program.h, 32 lanes per
state as on a warp) run on the CPU through emulated lanes: it must agree
with the reference, so the CUDA logic is tested even without a GPU."""
from pathlib import Path

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


@pytest.mark.parametrize("small", [1e-3, 1e-2, 0.1])
def test_rzz_large_pair_angle_beside_small_ones_float32(small):
    """One rzz pair angle 1e6, the others small: each backend forms one unit phase per pair from that pair's own
    cos and sin (gates.h rzz_factor). The CUDA program used to take the sine of the summed phase, which lost the
    small angles in float32 (feature errors of 2e-3 to 4e-2 against 1e-7 for the CPU kernel)."""
    import qlam

    g = torch.Generator().manual_seed(0)
    n = 4
    angles = (torch.rand(1, 3, 1, 1, n, 3, generator=g, dtype=torch.float64) - 0.5) * small
    ent = torch.full((1, 3, 1, 1, reference.num_pairs(n)), small, dtype=torch.float64)
    ent[..., 0] = 1e6
    want, want_final = reference.scan(angles, ent, entangler="rzz")
    a32, e32 = angles.float(), ent.float()
    cpu, _ = qlam.ops.scan(a32, e32, entangler="rzz")
    emulated, _, _ = torch.ops.qlam._warp_emulation_forward(a32, e32, None, None, "rzz", False, 0)
    for name, got in (("CPU kernel", cpu), ("emulated CUDA program", emulated)):
        err = (got.double() - want).abs().max().item()
        assert err < 1e-6, f"{name}: max feature error {err:.3g}"


# ---------------------------------------------------------------- race checker
# torch.ops.qlam._race_check_* run the same program under an executor in which, between two syncs, each lane
# sees only the last synced shared memory plus its own writes (csrc/cpu/race_check_executor.h). `pytest -k race`
# selects these tests.

RACE_CASES = [  # every code path: each entangler, pair features, lengths, checkpoints, float32 (norm restoring)
    (Case(B=2, T=3, H=1, L=2, n=n, entangler=e, pair_features=p), dtype, every)
    for n, e, p, dtype, every in [
        (3, "cnot", True, torch.float64, 2), (3, "cz", False, torch.float64, 0), (3, "rzz", True, torch.float64, 0),
        (6, "cnot", False, torch.float64, 0), (6, "rzz", True, torch.float32, 2), (1, "none", False, torch.float64, 0),
    ]
]


def _output_grads(features, final):
    """The same random gradients of the outputs for every run of a case."""
    g = torch.Generator().manual_seed(1)
    gf = torch.randn(features.shape, generator=g, dtype=torch.float64).to(features.dtype)
    gs = torch.randn(final.shape, generator=g, dtype=torch.complex128).to(final.dtype)
    return gf, gs


def _race_run(case, dtype, every, lanes=32, skip=-1):
    """Forward and backward under the race checker; returns (features, final, grads, sync lines seen)."""
    args = make_inputs(case, dtype=dtype)
    pos = (args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
           args["pair_features"])
    features, final, checkpoints, lines_f = torch.ops.qlam._race_check_forward(*pos, every, lanes, skip)
    gf, gs = _output_grads(features, final)
    *grads, lines_b = torch.ops.qlam._race_check_backward(gf, gs, args["angles"], args["ent_angles"], final,
                                                          checkpoints, args["lengths"], args["entangler"],
                                                          args["pair_features"], every, lanes, skip)
    return features, final, grads, set(lines_f.tolist()) | set(lines_b.tolist())


def _plain_run(case, dtype, every):
    args = make_inputs(case, dtype=dtype)
    pos = (args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
           args["pair_features"])
    features, final, checkpoints = torch.ops.qlam._warp_emulation_forward(*pos, every)
    gf, gs = _output_grads(features, final)
    grads = torch.ops.qlam._warp_emulation_backward(gf, gs, args["angles"], args["ent_angles"], final, checkpoints,
                                                    args["lengths"], args["entangler"], args["pair_features"], every)
    return features, final, list(grads)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip([a[0], a[1], *a[2]], [b[0], b[1], *b[2]]))


@pytest.mark.parametrize("lanes", [32, 4])
@pytest.mark.parametrize("case,dtype,every", RACE_CASES, ids=lambda v: str(v) if not isinstance(v, int) else f"every{v}")
def test_race_checker_passes_the_real_program(case, dtype, every, lanes):
    """The program as written has no race, and under the checker (each lane blind to the others' unsynced
    writes) it computes exactly what the plain emulation computes."""
    got = _race_run(case, dtype, every, lanes)
    plain = _plain_run(case, dtype, every)  # 32 lanes
    if lanes == 32:
        assert _same(got[:3], plain)
    else:  # other lanes: other summation orders in the reductions
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        for a, b in zip([got[0], got[1], *got[2]], [plain[0], plain[1], *plain[2]]):
            torch.testing.assert_close(a, b, atol=tol, rtol=0)
    assert len(got[3]) >= 5


def test_race_checker_catches_every_missing_sync():
    """Leave out each sync of state_program.h in turn: every one is caught, as a race report or as a
    result different from the synced program's."""
    lines = set()
    for case, dtype, every in RACE_CASES:
        lines |= _race_run(case, dtype, every)[3]
    missed = []
    for line in sorted(lines):
        caught = False
        for case, dtype, every in RACE_CASES:
            try:
                got = _race_run(case, dtype, every, skip=line)
            except RuntimeError as error:
                assert "qlam race check" in str(error)
                caught = True
                break
            if line in got[3] and not _same(got[:3], _plain_run(case, dtype, every)):
                caught = True
                break
        if not caught:
            missed.append(line)
    # Two syncs are not needed (the checker proves it; each says why in a comment); every other one is.
    source = (Path(__file__).resolve().parents[1] / "csrc" / "state_program.h").read_text().splitlines()
    redundant = {k + 1 for k, text in enumerate(source) if "ex.sync();  // kept for clarity" in text}
    assert len(redundant) == 2
    assert set(missed) == redundant, (
        f"a missing sync at line(s) {sorted(set(missed) - redundant)} of csrc/state_program.h goes unnoticed"
        if set(missed) - redundant else f"the sync at line(s) {sorted(redundant - set(missed))} is needed after all")
    assert len(lines) >= 15
