"""benchmarks/ncu_register.py's host side, which runs only on a GPU with Nsight Compute: reading ncu's CSV
(a table in the layout `ncu --csv --metrics` prints, written here by hand), choosing metrics by the names an
ncu knows, turning counters into per warp-token figures, the model's side of the table, and a clear exit where
there is no GPU."""
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import ncu_register as nr  # noqa: E402

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
          '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def ncu_row(metric, unit, value):
    return (f'"0","123","python3","127.0.0.1","void qlam::register_forward_kernel<float, 16>(...)","1","7",'
            f'"(32, 1, 1)","(2048, 1, 1)","0","9.0","Command line profiler metrics","{metric}","{unit}","{value}"')


def test_parse_skips_the_application_output_and_thousands_separators():
    text = "\n".join(["==PROF== Connected to process 123", "some output of the case", HEADER,
                      ncu_row("smsp__inst_executed.sum", "inst", "1,234,567"),
                      ncu_row("smsp__issue_active.avg.pct_of_peak_sustained_active", "%", "61.25"),
                      ncu_row("sm__cycles_elapsed.max", "cycle", "n/a"),
                      "==PROF== Disconnected from process 123"])
    assert nr.parse_ncu_csv(text) == {"smsp__inst_executed.sum": 1234567.0,
                                      "smsp__issue_active.avg.pct_of_peak_sustained_active": 61.25}


def test_parse_refuses_output_without_a_table():
    with pytest.raises(ValueError, match="no CSV table"):
        nr.parse_ncu_csv("==PROF== Connected\n==ERROR== the profiler failed")


def test_metrics_are_chosen_from_what_this_ncu_knows():
    known = {"smsp__inst_executed", "sm__sass_thread_inst_executed_op_ffma_pred_on", "sm__cycles_elapsed"}
    chosen, missing = nr.choose_metrics(known)
    assert chosen == {"warp_instructions": "smsp__inst_executed.sum",
                      "ffma": "sm__sass_thread_inst_executed_op_ffma_pred_on.sum",
                      "sm_cycles": "sm__cycles_elapsed.max"}
    assert set(missing) == {"fmul", "fadd", "issue_active_pct", "warps_active_pct",
                            *(f"stall_{r}" for r in nr.STALL_REASONS)}


def test_counters_become_per_warp_token_figures():
    chosen = {k: v[0] for k, v in nr.METRICS.items()}
    values = {chosen["warp_instructions"]: 2048 * 32 * 4500.0, chosen["ffma"]: 2048 * 32 * 32 * 2000.0,
              chosen["fmul"]: 2048 * 32 * 32 * 100.0, chosen["fadd"]: 2048 * 32 * 32 * 50.0,
              chosen["issue_active_pct"]: 40.0, chosen["sm_cycles"]: 32 * 9000.0}
    row = nr.per_warp_token(values, chosen, warps=2048, tokens=32)
    assert row == {"instructions": 4500.0, "fp32": 2150.0, "issue_active_pct": 40.0, "cycles_per_token": 9000.0}
    del values[chosen["fadd"]]                  # FP32 needs all three opcodes
    assert "fp32" not in nr.per_warp_token(values, chosen, warps=2048, tokens=32)


def test_the_models_side_and_the_table():
    pred = nr.predicted(8, 4096, "forward", "H100")
    assert pred["lanes_per_state"] == 16 and pred["warps_per_sm"] == 8 and pred["instructions"] > pred["fp32"] > 0
    rows = [{"kernel": "forward", "measured": {"lanes_per_state": 16, "instructions": 4600.0}, "predicted": pred}]
    meta = {"gpu": "test", "model_gpu": "H100", "command": "x", "n": 8, "states": 4096, "tokens": 32,
            "missing": ["fmul"]}
    text = nr.markdown(rows, meta)
    assert "| forward | 16 (16) | 4,600 (" in text and "n/a" in text and "Not collected" in text


def test_stall_reasons_become_warp_cycles_per_token():
    chosen = {k: v[0] for k, v in nr.METRICS.items()}
    values = {chosen["warp_instructions"]: 8 * 32 * 1000.0, chosen["stall_long_scoreboard"]: 0.5,
              chosen["stall_selected"]: 1.0, chosen["stall_short_scoreboard"]: 1.25}
    row = nr.per_warp_token(values, chosen, warps=8, tokens=32)
    assert row["stall_cycles"] == {"long_scoreboard": 500.0, "selected": 1000.0, "short_scoreboard": 1250.0}
    assert "stall_cycles" not in nr.per_warp_token({chosen["warp_instructions"]: 1.0}, chosen, warps=1, tokens=1)


def test_the_models_chain_terms_sum_to_its_chain():
    pred = nr.predicted(6, 256, "forward", "H100", "rzz")
    shape = nr.cm.smnist_shape()
    counts = nr.cm.register_counts(shape["n"], pred["lanes_per_state"], "forward", "rzz")[0]
    assert sum(pred["chain"].values()) == pytest.approx(nr.cm.chain_cycles(counts))
    assert pred["chain"]["syncs"] == counts.syncs * nr.cm.LAT["sync"]


def test_smnist_option_is_the_configs_training_shape():
    shape = nr.cm.smnist_shape()
    assert nr.SMNIST == {"n": shape["n"], "states": shape["states"]["training"], "entangler": shape["entangler"]}


def test_stall_tables_in_the_markdown():
    pred = {k: nr.predicted(6, 256, k, "H100", "rzz") for k in ("forward", "backward")}
    rows = [{"kernel": k, "measured": {"lanes_per_state": 32, "instructions": 1400.0,
                                       "stall_cycles": {"short_scoreboard": 900.0 + i, "selected": 1400.0}},
             "predicted": pred[k]} for i, k in enumerate(("forward", "backward"))]
    meta = {"gpu": "test", "model_gpu": "H100", "command": "x", "n": 6, "states": 256, "tokens": 32,
            "entangler": "rzz"}
    text = nr.markdown(rows, meta)
    assert ", rzz, no pair features" in text
    assert "| selected | 1,400 | 1,400 |" in text and "| short_scoreboard | 900 | 901 |" in text
    assert "| total | 2,300 | 2,301 |" in text
    chain = [f"{sum(pred[k]['chain'].values()):,.0f}" for k in ("forward", "backward")]
    assert f"| total | {chain[0]} | {chain[1]} |" in text
    # without stall metrics there are no such tables
    for r in rows:
        del r["measured"]["stall_cycles"]
    assert "stall reason" not in nr.markdown(rows, meta)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_exits_with_a_message_without_a_gpu():
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        nr.main([])


def test_kernel_filters_match_the_kernels_the_host_launches():
    import re

    import qlam

    source = (BENCH.parent / "csrc" / "cuda" / "register_cuda.cu").read_text()
    kernels = re.findall(r"__global__ void (\w+)\(", source)
    assert {"register_forward_warp_kernel", "register_backward_warp_kernel"} <= set(kernels)
    for kernel in kernels:
        direction = "forward" if "forward" in kernel else "backward"
        other = "backward" if direction == "forward" else "forward"
        assert re.fullmatch(nr.KERNELS[direction], kernel), kernel
        assert not re.search(nr.KERNELS[other], kernel), kernel
    # the sMNIST shape runs on the warp kernels (G = 32) on an H100 or H200's 132 SMs: --smnist profiles those
    for backward in (False, True):
        assert qlam._C.register_lanes_per_state(nr.SMNIST["n"], nr.SMNIST["states"], 132, False, backward) == 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_the_profiled_process_loads_the_extension_before_its_ops():
    import os
    import subprocess

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, str(BENCH / "ncu_register.py"), "--case", "forward", "--n", "3",
                          "--states", "2", "--tokens", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert "ncu_register.py --case: needs a CUDA GPU" in out.stderr  # torch.ops.qlam resolved first
