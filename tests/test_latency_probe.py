"""The latency probes (csrc/cuda/latency_probe.cu, `torch.ops.qlam._latency_probe`) and their benchmark
(benchmarks/latencies.py), which measure the latencies benchmarks/cost_model.py assumes.

Without a GPU: the probes' machine code (sm_90 SASS, where nvcc and a cuobjdump exist) keeps each timed
chain between its two clock reads, so a probe times what it says; the chase buffers form one cycle through
every line; the measured cycles map onto the model's latencies and its predictions are redone with them
(and the model's own come back). With a GPU: the probes run, their input errors are clear, and the
measured latencies are ordered as any GPU's are (L1 < L2 < DRAM)."""
import collections
import functools
import re
import sys
from pathlib import Path

import pytest
import torch

import qlam  # noqa: F401  (loads the extension: the op's schema)
from cuda_build import NVCC, find_cuobjdump, sass

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cost_model  # noqa: E402
import latencies  # noqa: E402

CUOBJDUMP = find_cuobjdump()
HAS_CUDA = torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and qlam built with its CUDA kernels")

LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\s*([^;]*);")


@functools.lru_cache(maxsize=None)
def timed_regions() -> dict:
    """probe kernel -> Counter of the SASS opcodes between its two clock reads (CS2R ... SR_CLOCKLO)."""
    out = {}
    text = sass("latency_probe.cu", "90", CUOBJDUMP)
    for block in re.split(r"\n\s*Function : ", text)[1:]:
        m = re.search(r"(probe_[a-z_]+?_kernel)(I[^E]*E)?", block.split("\n", 1)[0])
        name = m.group(1) + ("<true>" if m.group(2) == "ILb1E" else "<false>" if m.group(2) == "ILb0E" else "")
        ops = [(mm.group(2), mm.group(3)) for mm in map(LINE.search, block.splitlines()) if mm]
        clocks = [i for i, (_, operands) in enumerate(ops) if "SR_CLOCKLO" in operands]
        assert len(clocks) == 2, f"{name}: expected 2 clock reads, found {len(clocks)}"
        out[name] = collections.Counter(op for op, _ in ops[clocks[0]:clocks[1] + 1])
    return out


# kernel -> (opcode, at least this many between the clock reads: the 32 unrolled operations)
CHAINS = {
    "probe_ffma_kernel": ("FFMA", 32),
    "probe_ffma_ilp_kernel": ("FFMA", 32),
    "probe_shfl_kernel": ("SHFL.BFLY", 32),
    "probe_shfl_after_loop_kernel<true>": ("MATCH.ANY", 32),  # a convergence check before each shuffle
    "probe_shfl_after_loop_kernel<false>": ("SHFL.BFLY", 32),
    "probe_syncwarp_kernel": ("NOP", 32),  # __syncwarp on a converged warp: ptxas's NOP
    "probe_sync_phase_kernel": ("STS", 32),
    "probe_lds_kernel": ("LDS", 32),
    "probe_chase_kernel": ("LDG.E.64", 32),
    "probe_stream_kernel<false>": ("LDG.E", 1),
    "probe_stream_kernel<true>": ("CCTL.E.PF2", 1),
}


@pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)")
@pytest.mark.skipif(CUOBJDUMP is None, reason="needs cuobjdump")
@pytest.mark.parametrize("kernel", sorted(CHAINS))
def test_probe_times_its_chain(kernel):
    regions = timed_regions()
    assert set(regions) == set(CHAINS), f"probe kernels changed: {sorted(regions)}"
    op, least = CHAINS[kernel]
    got = regions[kernel]
    assert got[op] >= least, f"{kernel}: {got[op]} {op} between its clock reads, wants >= {least}: {dict(got)}"
    if kernel == "probe_sync_phase_kernel":
        assert got["LDS"] >= 32, dict(got)
    if kernel.startswith("probe_stream_kernel"):
        assert got["FFMA"] >= 8, dict(got)  # the work loop is timed too
    if kernel == "probe_stream_kernel<false>":
        assert got["CCTL.E.PF2"] == 0, dict(got)
    if kernel.startswith("probe_shfl_after_loop_kernel"):
        assert got["SHFL.BFLY"] == 32, dict(got)
    if kernel == "probe_shfl_after_loop_kernel<false>":
        assert got["MATCH.ANY"] == 0 and got["REDUX.OR"] == 0, dict(got)


def test_chase_indices_form_one_cycle_through_every_line():
    g = torch.Generator().manual_seed(3)
    per_line = latencies.LINE_BYTES // 8
    idx = latencies.chase_indices(50 * per_line, g)
    assert idx.dtype == torch.long and idx.numel() == 50 * per_line
    visited, at = [], 0
    for _ in range(50):
        visited.append(at)
        at = int(idx[at])
    assert at == 0 and sorted(visited) == [k * per_line for k in range(50)]
    off_line = torch.ones(idx.numel(), dtype=torch.bool)
    off_line[::per_line] = False
    assert idx[off_line].eq(0).all()  # the other entries stay valid indices
    with pytest.raises(ValueError, match="whole number"):
        latencies.chase_indices(per_line + 1)


FAKE = {"ffma": 4.5, "ffma_ilp": 1.2, "shfl": 30.0, "shfl_checked": 95.0, "shfl_unchecked": 40.0, "syncwarp": 2.0, "sync_phase": 70.0, "lds": 31.0,
        "chase_l1": 36.0, "chase_l2": 300.0, "chase_dram": 900.0, "stream": 3500.0, "stream_prefetch_l2": 2700.0}


def test_probed_latencies_replace_the_assumed_ones():
    lat, cpi = latencies.probed_latencies(FAKE)
    assert lat == {"alu": 4.5, "shfl": 30.0, "smem": 31.0, "l1": 36.0, "l2": 300.0, "dram": 900.0, "sync": 39.0}
    assert cpi == 1.2
    assert set(lat) == set(cost_model.LAT)  # every latency the model uses is measured


def test_predictions_use_the_measured_latencies_and_restore_the_model():
    saved = dict(cost_model.LAT), cost_model.CPI_SOLO
    lat, cpi = latencies.probed_latencies(FAKE)
    before, after = latencies.predictions("H100"), latencies.predictions("H100", lat, cpi)
    assert (dict(cost_model.LAT), cost_model.CPI_SOLO) == saved
    assert [r["case"] for r in before] == [r["case"] for r in after]
    smnist = [(a, b) for a, b in zip(before, after) if a["case"].startswith("sMNIST training")]
    assert smnist and all(a["chain_cycles"] != b["chain_cycles"] for a, b in smnist)
    # by hand: the register forward's chain at the sMNIST shape, the model's counts priced with FAKE
    shape = cost_model.smnist_shape()
    counts = cost_model.register_counts(shape["n"], 32, "forward", shape["entangler"])[0]
    with cost_model.latencies(lat, cpi):
        want = cost_model.chain_cycles(counts)
    row = next(b for a, b in smnist if a["design"] == "register" and a["pass"] == "forward")
    assert row["chain_cycles"] == f"{want:.0f}"  # the model writes it as text (fwd/bwd for both kernels)


def test_markdown_sets_measured_beside_assumed():
    stats = {p: {"median": v, "min": 0.9 * v, "max": 1.1 * v} for p, v in FAKE.items()}
    md = latencies.markdown(stats, "H100", {"gpu": "test GPU", "torch": "x", "command": "c", "repeats": 3})
    assert "| chase_l2 | dependent LDG over 16 MiB, warmed | LAT[\"l2\"] | 260 | 300.0 (270.0-330.0) |" in md
    exposed = FAKE["stream_prefetch_l2"] - latencies.STREAM_WORK * FAKE["ffma"]
    assert f"{exposed:.0f} with the line hinted to L2" in md
    assert "55 cycles each (shfl_checked - shfl_unchecked)" in md
    assert md.count("| sMNIST training (256 states) |") == 4


def test_load_ignores_another_gpus_measurement(tmp_path):
    path = tmp_path / "latencies_cuda.json"
    path.write_text('{"meta": {"gpu": "GPU A"}, "rows": [{"probe": "ffma", "median": 4.0}]}')
    assert latencies.load(str(path), "GPU A") == {"ffma": 4.0}
    assert latencies.load(str(path), "GPU B") is None
    assert latencies.load(str(tmp_path / "missing.json"), "GPU A") is None


def test_op_schema_is_registered():
    schema = str(torch.ops.qlam._latency_probe.default._schema)
    assert schema.startswith("qlam::_latency_probe(Tensor buffer, str probe, int steps, int warm, int work)")


@needs_gpu
def test_probes_measure_ordered_latencies():
    anchor = torch.zeros(1, device="cuda")

    def per_op(probe, buf, steps, warm=0, work=0):
        cycles, _ = torch.ops.qlam._latency_probe(buf, probe, steps, warm, work).tolist()
        assert cycles > 0
        return cycles / steps

    ffma = per_op("ffma", anchor, 32 * 256)
    assert 1 <= ffma < 64
    assert per_op("ffma_ilp", anchor, 32 * 256) < ffma
    g = torch.Generator(device="cuda").manual_seed(0)
    small = latencies.chase_indices(2048, g, "cuda")
    large = latencies.chase_indices((64 << 20) // 8, g, "cuda")
    l1 = per_op("chase", small, 32 * 32, warm=256)
    dram = per_op("chase", large, 32 * 32)
    assert l1 < dram, (l1, dram)


@needs_gpu
def test_probe_input_errors_are_clear():
    anchor = torch.zeros(1, device="cuda")
    with pytest.raises(RuntimeError, match="unknown probe 'nope'; the probes are ffma"):
        torch.ops.qlam._latency_probe(anchor, "nope", 32, 0, 0)
    with pytest.raises(RuntimeError, match="steps must be a multiple of 32"):
        torch.ops.qlam._latency_probe(anchor, "ffma", 33, 0, 0)
    bad = torch.tensor([1, 5], device="cuda")
    with pytest.raises(RuntimeError, match=r"indices must lie in \[0, 2\), got \[1, 5\]"):
        torch.ops.qlam._latency_probe(bad, "chase", 32, 0, 0)
    with pytest.raises(RuntimeError, match="at least"):
        torch.ops.qlam._latency_probe(torch.zeros(10, device="cuda"), "stream", 4, 0, 8)
    with pytest.raises(RuntimeError, match="work must be a multiple of 8"):
        torch.ops.qlam._latency_probe(anchor, "ffma", 32, 0, 8)


@pytest.mark.skipif(HAS_CUDA, reason="checks the exit where there is no GPU")
def test_benchmark_exits_clearly_without_a_gpu():
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        latencies.main([])
