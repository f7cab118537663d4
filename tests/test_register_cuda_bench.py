"""benchmarks/register_cuda.py's host side, which otherwise runs only on a GPU: the points it measures
(the sMNIST config's shape among them), the model it sets each point beside, the tables it writes, and a
clear exit where there is no GPU."""
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import cost_model  # noqa: E402
import register_cuda as rc  # noqa: E402


def test_points_include_the_smnist_configs_shape():
    full, quick = rc.points(False), rc.points(True)
    assert (6, 64, 4, "rzz", 784) in full and (6, 500, 4, "rzz", 784) in full   # training and evaluation batches
    assert (8, 4096, 1, "cnot", 256) in full
    assert all(T < 784 for *_, T in quick) and any(e == "rzz" for _, _, _, e, _ in quick)


@pytest.mark.parametrize("name,gpu", [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
                                      ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA L40S", "H100")])
def test_model_gpu(name, gpu):
    assert rc.model_gpu(name) == gpu


def test_predicted_is_the_models_smnist_table():
    got = rc.predicted("H100", 6, 256, "rzz")
    rows = {(r["pass"], r["design"]): r for r in cost_model.smnist_rows("H100") if r["use"] == "training"}
    for design in ("shared", "register"):
        assert math.isclose(got[f"model_{design}_fwd_ns"], rows[("forward", design)]["ns_per_state_token"])
        assert math.isclose(got[f"model_{design}_fwd_bwd_ns"], rows[("forward+backward", design)]["ns_per_state_token"])


def fake_row(**over):
    row = dict(n=6, states=256, heads=4, entangler="rzz", T=784, L=2, shared_s=0.02, shared_frac=0.01,
               best_register_s=0.005, best_register="32", register_frac=0.04, speedup=4.0, shared_bwd_s=0.06,
               shared_bwd_frac=0.01, best_register_bwd_s=0.01, best_register_bwd="32", register_bwd_frac=0.05,
               bwd_speedup=6.0, shared_fwd_bwd_s=0.08, register_fwd_bwd_s=0.015, fwd_bwd_speedup=5.3,
               shared_fwd_ns=99.6, register_fwd_ns=24.9, shared_fwd_bwd_ns=398.6, register_fwd_bwd_ns=74.7,
               model_gpu="H100", **rc.predicted("H100", 6, 256, "rzz"))
    row.update(over)
    return row


def test_markdown_sets_measured_beside_the_model():
    meta = {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "command": "python benchmarks/register_cuda.py",
            "matmul_gflops": 51000.0}
    row = fake_row()
    md = rc.markdown([row], meta)
    assert "| 6 | 256 (4) | rzz | 784 | 20.00 ms |" in md
    want = row["register_fwd_bwd_ns"] / row["model_register_fwd_bwd_ns"]
    assert f"{row['register_fwd_bwd_ns']:.2f} / {row['model_register_fwd_bwd_ns']:.2f} ({want:.2f}x)" in md
    assert "prediction for the H100" in md
    # a point the model has no figure for shows the measurement alone
    assert "| 99.60 / - |" in rc.markdown([fake_row(model_shared_fwd_ns=float("nan"))], meta)


def test_points_that_decide_the_issue_come_first():
    full = rc.points(False)
    assert full[:3] == [(6, 64, 4, "rzz", 784), (8, 4096, 1, "cnot", 256), (6, 500, 4, "rzz", 784)]
    assert len(full) == len(set(full)) == 9 + 2  # the cnot grid (3 n x 3 S) and the two sMNIST batches
    assert rc.points(True)[0] == (6, 64, 4, "rzz", 64)


def test_a_run_cut_short_says_so():
    meta = {"gpu": "test", "torch": "2.11.0", "command": "c", "matmul_gflops": 51000.0}
    assert "points measured" not in rc.markdown([fake_row()], dict(meta, points_measured=11, points_planned=11))
    assert "**1 of the 11 points measured**" in rc.markdown([fake_row()], dict(meta, points_measured=1,
                                                                                 points_planned=11))


def test_disagreeing_runs_are_listed_above_the_tables():
    meta = {"gpu": "test", "torch": "2.11.0", "command": "c", "matmul_gflops": 51000.0}
    assert "disagree" not in rc.markdown([fake_row()], meta)
    wrong = "n=6 S=256 lanes=auto: the register forward's features differ from today's by 0.5"
    md = rc.markdown([fake_row()], dict(meta, mismatches=[wrong]))
    assert md.index(f"- {wrong}") < md.index("| n | states (heads) |")
    assert "(1 runs beyond 0.001)" in md


def test_probed_latencies_add_a_second_model_table():
    meta = {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "command": "python benchmarks/register_cuda.py",
            "matmul_gflops": 51000.0}
    assert "latencies benchmarks/latencies.py measured" not in rc.markdown([fake_row()], meta)
    probed = {"ffma": 4.5, "ffma_ilp": 1.2, "shfl": 30.0, "sync_phase": 70.0, "lds": 31.0, "chase_l1": 36.0,
              "chase_l2": 300.0, "chase_dram": 900.0}
    got = rc.predicted("H100", 6, 256, "rzz", probed)
    assert got["model_register_fwd_ns"] == rc.predicted("H100", 6, 256, "rzz")["model_register_fwd_ns"]
    assert got["probed_model_register_fwd_ns"] != got["model_register_fwd_ns"]
    row = fake_row(**got)
    md = rc.markdown([row], meta)
    table = md.split("latencies benchmarks/latencies.py measured")[1]
    want = row["register_fwd_ns"] / row["probed_model_register_fwd_ns"]
    assert f"{row['register_fwd_ns']:.2f} / {row['probed_model_register_fwd_ns']:.2f} ({want:.2f}x)" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the exit where there is no GPU")
def test_exits_clearly_without_a_gpu():
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        rc.main([])
