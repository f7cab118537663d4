"""Issue 15's race checker for the register program (csrc/register_program.h): torch.ops.qlam.
_register_race_check_forward / _backward run the program on the CPU under an executor that records, for
every sync-delimited phase, which lane read and which wrote each byte of the group's shared scratch (gate
matrices, rzz cos/sin, trig values, double-buffered by layer), and raise on a race (two lanes, one byte,
one phase, at least one write) or on a read of scratch no lane has written (csrc/cpu/
register_race_check.cpp). Each lane also runs on its own view of the scratch (the last sync plus its own
writes), so results equal to the plain emulation's also show that no lane depends on an unsynced write.

The program as written must pass for every G, n, entangler, pair features, lengths, checkpoints and
dtype, computing bit for bit what torch.ops.qlam._register_emulation_* compute. The `mutation`
argument plants bugs (a sync left out, one buffer for both layers, ...): each must be reported, or a
checker that never fires would pass the same tests."""
import math
import re

import pytest
import torch

from qlam import reference
from scan_cases import Case, make_inputs

LANES = (1, 2, 4, 8, 16, 32)
DTYPES = {"f64": torch.float64, "f32": torch.float32}


def _pos(args):
    return (args["angles"], args["ent_angles"], args["init_state"], args["lengths"], args["entangler"],
            args["pair_features"])


def checked_forward(args, lanes, every, mutation="none"):
    return torch.ops.qlam._register_race_check_forward(*_pos(args), every, lanes, mutation)


def checked_backward(args, grads, final, checkpoints, lanes, every, mutation="none"):
    return torch.ops.qlam._register_race_check_backward(
        *grads, args["angles"], args["ent_angles"], final, checkpoints, args["lengths"], args["entangler"],
        args["pair_features"], every, lanes, mutation)


def emulated_forward(args, lanes, every):
    return torch.ops.qlam._register_emulation_forward(*_pos(args), every, lanes)


def emulated_backward(args, grads, final, checkpoints, lanes, every):
    return torch.ops.qlam._register_emulation_backward(
        *grads, args["angles"], args["ent_angles"], final, checkpoints, args["lengths"], args["entangler"],
        args["pair_features"], every, lanes)


def output_grads(features, final, seed=1):
    g = torch.Generator().manual_seed(seed)
    gf = torch.randn(features.shape, generator=g, dtype=torch.float64).to(features.dtype)
    gs = torch.randn(final.shape, generator=g, dtype=torch.complex128).to(final.dtype)
    return gf, gs


def layers_run(args):
    """Layers the states run in all."""
    B, T, H, L = args["angles"].shape[:4]
    lengths = args["lengths"] if args["lengths"] is not None else torch.full((B,), T)
    return int(lengths.sum()) * H * L


def syncs_run(args):
    """The ex.sync() calls of all states: two per pair of layers a token loads (register_program.h
    load_layers: one before the pair's writes, one after), so L = 1 and L = 2 both take two a token."""
    L = args["angles"].shape[3]
    return layers_run(args) // L * 2 * math.ceil(L / 2)


def assert_same(got, want, names):
    for name, x, y in zip(names, got, want):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), f"{name} differs from the plain emulation's (max {(x - y).abs().max()})"


def run_both(args, lanes, every):
    """Forward and backward under the checker, compared bit for bit with the plain emulation; the stats."""
    *fwd, fstats = checked_forward(args, lanes, every)
    want = emulated_forward(args, lanes, every)
    assert_same(fwd, want, ("features", "final_state", "checkpoints"))
    grads = output_grads(fwd[0], fwd[1])
    *bwd, bstats = checked_backward(args, grads, fwd[1], fwd[2], lanes, every)
    assert_same(bwd, emulated_backward(args, grads, want[1], want[2], lanes, every),
                ("grad_angles", "grad_ent_angles", "grad_init_state"))
    return fstats.tolist(), bstats.tolist()


def assert_saw_the_scratch(args, stats):
    """The checker saw two syncs per pair of layers and scratch accesses: the hooks are wired."""
    syncs, loads, stores, _ = stats
    layers = layers_run(args)
    assert syncs == syncs_run(args)
    assert (loads > 0 and stores > 0) == (layers > 0), stats


# ---------------------------------------------------------------- the program as written


def grid_args(n, entangler, pair_features, dtype):
    case = Case(B=3, T=5, H=2, L=2, n=n, entangler=entangler, pair_features=pair_features)
    args = make_inputs(case, dtype=DTYPES[dtype])
    args["lengths"] = torch.tensor([case.T, 0, 3])  # full, empty and short sequences
    return args


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pair_features", [False, True], ids=["single", "pairs"])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
@pytest.mark.parametrize("n", range(1, 9))
def test_no_race_and_same_results(n, entangler, pair_features, dtype):
    """Every G <= 2**n, n = 1..8, every entangler, pair features on and off, lengths T, 0 and 3, checkpoints
    every 2 tokens, float32 and float64: no finding, and the emulation's results bit for bit."""
    args = grid_args(n, entangler, pair_features, dtype)
    for lanes in LANES:
        if lanes > 2**n:
            continue
        fstats, bstats = run_both(args, lanes, 2)
        assert_saw_the_scratch(args, fstats)
        assert_saw_the_scratch(args, bstats)


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("n,entangler", [(10, "rzz"), (10, "cnot"), (10, "cz")])
def test_no_race_large_state(n, entangler, lanes):
    """n = 10: R = 32..1024 registers a lane."""
    case = Case(B=2, T=2, H=1, L=1, n=n, entangler=entangler, pair_features=True)
    args = make_inputs(case)
    args["lengths"] = torch.tensor([2, 1])
    fstats, bstats = run_both(args, lanes, 1)
    assert_saw_the_scratch(args, fstats)
    assert_saw_the_scratch(args, bstats)


@pytest.mark.parametrize("lanes", [1, 4, 32])
@pytest.mark.parametrize("every", [0, 1, 3])
def test_no_race_checkpoints_and_defaults(every, lanes):
    """No checkpoints, a checkpoint after every token and every third; no lengths and no initial state."""
    case = Case(B=2, T=4, H=2, L=3, n=6, entangler="rzz", pair_features=True, with_init=False,
                with_lengths=False)
    args = make_inputs(case)
    fstats, bstats = run_both(args, lanes, every)
    assert_saw_the_scratch(args, fstats)
    assert_saw_the_scratch(args, bstats)


def test_more_lanes_than_amplitudes():
    """G > 2**n uses 2**n lanes, as the emulation does: the same results and the same accesses."""
    args = grid_args(2, "rzz", True, "f64")
    assert run_both(args, 32, 2) == run_both(args, 4, 2)


# ---------------------------------------------------------------- mutations: the checker bites


def mutation_args(n=4, entangler="rzz", L=2, lengths=(3, 1), dtype="f64"):
    case = Case(B=len(lengths), T=max(lengths), H=1, L=L, n=n, entangler=entangler, pair_features=True)
    args = make_inputs(case, dtype=DTYPES[dtype])
    args["lengths"] = torch.tensor(lengths)
    return args


def saved_outputs(args, lanes, every=0):
    features, final, checkpoints = emulated_forward(args, lanes, every)
    return output_grads(features, final), final, checkpoints


def expect_report(direction, lanes, mutation, what):
    """The error a mutation must raise: `what` is the kind of finding, with a nonzero count."""
    head = re.escape(f"qlam register race check ({direction}, {lanes} lanes per state, mutation '{mutation}'): ")
    kinds = {
        "race": r"[1-9]\d* race\(s\) on the group's shared scratch",
        "unwritten": r"\d+ race\(s\).*, [1-9]\d* read\(s\) of scratch no lane had written",
        "unhooked": r".*, [1-9]\d* scratch write\(s\) not made through the hooks",
    }
    return head + kinds[what]


def assert_caught(args, lanes, mutation, what, every=0):
    with pytest.raises(RuntimeError, match=expect_report("forward", lanes, mutation, what)):
        checked_forward(args, lanes, every, mutation)
    grads, final, checkpoints = saved_outputs(args, lanes, every)
    with pytest.raises(RuntimeError, match=expect_report("backward", lanes, mutation, what)):
        checked_backward(args, grads, final, checkpoints, lanes, every, mutation)


@pytest.mark.parametrize("lanes", [2, 4, 8, 16])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
def test_dropping_every_sync_is_a_race(entangler, lanes):
    """Without ex.sync() the lanes read gate matrices other lanes wrote in the same phase."""
    assert_caught(mutation_args(entangler=entangler), lanes, "no_sync", "race")


@pytest.mark.parametrize("lanes", [2, 32])
def test_every_sync_is_needed(lanes):
    """Leaving out any one of a state's syncs but its first is a race: without the one after a pair's writes
    the layers' reads meet them; without the one before, the writes meet the last pair's reads. The first
    comes before anything was read (it keeps a group that runs states in turn safe): no finding without it."""
    args = mutation_args(n=5, L=2, lengths=(3, 2))
    for k in range(1, 3 * 2):  # the first state's syncs: 3 tokens, one pair of layers each
        assert_caught(args, lanes, f"skip_sync:{k}", "race")
    assert_caught(args, lanes, "skip_sync:3+single_buffer", "race")  # mutations combine
    want = emulated_forward(args, lanes, 0)
    assert_same(checked_forward(args, lanes, 0, "skip_sync:0")[:3], want, ("features", "final_state", "checkpoints"))
    run_both(args, lanes, 0)  # and the unmutated program passes on the same inputs


def test_skipping_a_sync_past_the_end_changes_nothing():
    args = mutation_args(lengths=(2, 1))
    want = emulated_forward(args, 4, 0)
    assert_same(checked_forward(args, 4, 0, "skip_sync:99")[:3], want, ("features", "final_state", "checkpoints"))


@pytest.mark.parametrize("lanes", [2, 4, 16])
@pytest.mark.parametrize("entangler", reference.ENTANGLERS)
def test_rewriting_a_pair_without_the_sync_before_is_a_race(entangler, lanes):
    """The second token's pair of layers written in the phase in which the first token's are still read
    (its first sync, the state's third, left out)."""
    assert_caught(mutation_args(entangler=entangler), lanes, "skip_sync:2", "race")


def test_one_buffer_is_enough_for_one_layer():
    """No false alarm: with one layer per state nothing is rewritten, so a single buffer has no race."""
    args = mutation_args(L=1, lengths=(1, 1))
    assert_same(checked_forward(args, 4, 0, "single_buffer")[:3], emulated_forward(args, 4, 0),
                ("features", "final_state", "checkpoints"))


@pytest.mark.parametrize("lanes", [1, 2, 16])
def test_reading_the_other_buffer_reads_unwritten_scratch(lanes):
    """Reads from the other layer's buffer: with one layer, scratch nobody wrote (even with one lane)."""
    assert_caught(mutation_args(L=1), lanes, "other_buffer", "unwritten")


@pytest.mark.parametrize("lanes", [2, 8])
def test_persistent_group_is_safe_with_the_first_sync_only(lanes):
    """One group running the states in turn over one scratch (not what register_cuda.cu launches: one
    state per group) is safe at any number of layers, since each state's first pair of layers is written
    after a sync; the results are the emulation's (which runs its states in turn over one scratch).
    Without that first sync the next state's writes meet the last state's reads."""
    for L in (1, 2, 3):
        args = mutation_args(L=L, lengths=(3, 2))
        assert_same(checked_forward(args, lanes, 0, "persistent")[:3], emulated_forward(args, lanes, 0),
                    ("features", "final_state", "checkpoints"))
        first_of_state_1 = 3 * 2 * math.ceil(L / 2)  # a persistent group counts its syncs over all its states
        with pytest.raises(RuntimeError, match=r"state 1\)"):
            checked_forward(args, lanes, 0, f"persistent+skip_sync:{first_of_state_1}")


@pytest.mark.parametrize("lanes", [1, 4])
def test_a_store_past_the_hooks_is_reported(lanes):
    """A scratch write the hooks do not see (the hook stores without recording) is still found."""
    assert_caught(mutation_args(), lanes, "unrecorded_stores", "unhooked")


@pytest.mark.parametrize("lanes", [2, 8])
def test_a_load_past_the_hooks_sees_only_synced_data(lanes):
    """Loads the hooks do not see: without syncs nothing is reported, but each lane sees only its own view
    of the scratch (never-written bytes are NaN), so the results are wrong and the bit-for-bit comparison
    with the emulation fails. With the syncs, unrecorded loads change nothing."""
    args = mutation_args()
    features, final, _, stats = checked_forward(args, lanes, 0, "no_sync+unrecorded_loads")
    assert stats.tolist()[:2] == [0, 0]  # no sync honoured, no load recorded
    assert torch.isnan(features).any() and torch.isnan(final).any()
    assert_same(checked_forward(args, lanes, 0, "unrecorded_loads")[:3], emulated_forward(args, lanes, 0),
                ("features", "final_state", "checkpoints"))


def test_reports_name_the_place():
    """A report says which lanes, which scratch element, which phase and which state."""
    with pytest.raises(RuntimeError) as caught:
        checked_forward(mutation_args(n=3), 4, 0, "no_sync")
    text = str(caught.value)
    assert re.search(r"lane \d+ read mats\[0\]\[\d+\], which lane \d+ wrote in phase 0 \(after 0 ex.sync\(\), "
                     r"state 0\): no ex.sync\(\) orders them", text), text


@pytest.mark.parametrize("mutation", ["", "drop_sync", "skip_sync:", "skip_sync:-1", "no_sync+"])
def test_bad_mutation(mutation):
    with pytest.raises(RuntimeError, match="qlam register race check: unknown mutation"):
        checked_forward(mutation_args(), 2, 0, mutation)


@pytest.mark.parametrize("lanes", [0, 3, 64])
def test_bad_lanes(lanes):
    with pytest.raises(RuntimeError, match=r"_register_race_check_forward: lanes_per_state must be a power of "
                                           r"two from 1 to 32 .*got " + str(lanes)):
        checked_forward(mutation_args(), lanes, 0)
