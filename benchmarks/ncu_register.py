"""Issue 15's register kernels under Nsight Compute: what they execute per warp and token, beside what
benchmarks/cost_model.py predicts. Needs a GPU and ncu (Nsight Compute's command line).

    python benchmarks/ncu_register.py [--n 8] [--states 4096] [--tokens 32] [--entangler cnot]
    python benchmarks/ncu_register.py --smnist      # n = 6, 256 states, rzz: the sMNIST config's training shape

Profiles one launch of torch.ops.qlam._register_forward and one of _register_backward (float32, H = 1,
L = 2, cnot or rzz, no pair features: the model's shape; lanes per state: the host's choice) with
`ncu --csv --metrics ...`, and divides the counters by warps x tokens: warp instructions issued, FP32
warp instructions (FFMA + FMUL + FADD thread instructions / 32), the issue-slot utilisation, the achieved
occupancy and SM cycles per token; and where a warp's cycles go: each stall reason's warps per issue-active
cycle (smsp__average_warps_issue_stalled_<reason>_per_issue_active) times the warp instructions per token,
the warp-cycles per warp and token the warps spent stalled for that reason (long scoreboard: global loads;
short scoreboard: shared memory, shuffles, MUFU; wait: fixed-latency dependencies; no instruction: i-cache
misses, which the model leaves out; ...). Beside them: cost_model.register_counts (instructions, FP32 per
warp and token), cost_model.register_kernel (warps per SM, cycles per token) and the terms of the model's
one-warp chain per token (cost_model.chain_cycles), which the stall reasons check where the shape is
latency-bound (the sMNIST shape). Cycles are clock-independent, so
they compare with the model even though ncu locks the clock. The kernels' prologue (loading the state, the
first norm) is spread over the tokens. Metrics this ncu does not know (their names move between versions)
are listed as missing, not guessed. Writes benchmarks/results/ncu_register_cuda.json and .md
(ncu_register_smnist_cuda.* with --smnist).
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost_model as cm  # noqa: E402

# What we read -> the metric names that give it, first known one wins (ncu renames metrics now and then).
METRICS = {
    "warp_instructions": ["smsp__inst_executed.sum"],
    "ffma": ["smsp__sass_thread_inst_executed_op_ffma_pred_on.sum", "sm__sass_thread_inst_executed_op_ffma_pred_on.sum"],
    "fmul": ["smsp__sass_thread_inst_executed_op_fmul_pred_on.sum", "sm__sass_thread_inst_executed_op_fmul_pred_on.sum"],
    "fadd": ["smsp__sass_thread_inst_executed_op_fadd_pred_on.sum", "sm__sass_thread_inst_executed_op_fadd_pred_on.sum"],
    "issue_active_pct": ["smsp__issue_active.avg.pct_of_peak_sustained_active"],
    "warps_active_pct": ["sm__warps_active.avg.pct_of_peak_sustained_active"],
    "sm_cycles": ["sm__cycles_elapsed.max"],
}
# Warp stall reasons (Nsight Compute's names), each as warps stalled per issue-active cycle.
STALL_REASONS = ("long_scoreboard", "short_scoreboard", "wait", "barrier", "membar", "branch_resolving",
                 "no_instruction", "math_pipe_throttle", "mio_throttle", "lg_throttle", "dispatch_stall", "drain",
                 "imc_miss", "misc", "not_selected", "selected", "sleeping", "tex_throttle")
METRICS.update({f"stall_{r}": [f"smsp__average_warps_issue_stalled_{r}_per_issue_active.ratio"]
                for r in STALL_REASONS})
SMNIST = {"n": 6, "states": 256, "entangler": "rzz"}  # configs/smnist/qlam.yaml: batch 64 x 4 heads
# ncu --kernel-name regexes: the group kernels and, at G = 32 (the sMNIST shape), the warp kernels.
KERNELS = {"forward": "register_forward(_warp)?_kernel", "backward": "register_backward(_warp)?_kernel"}
L = cm.L


def find_ncu() -> str | None:
    for candidate in (os.environ.get("QLAM_NCU"), shutil.which("ncu"), "/usr/local/cuda/bin/ncu"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def known_metrics(ncu: str) -> set[str]:
    """Base names (before the first '.') of the metrics this ncu can collect on this GPU."""
    out = subprocess.run([ncu, "--query-metrics"], capture_output=True, text=True, timeout=120)
    names = set()
    for line in out.stdout.splitlines():
        word = line.split(" ", 1)[0].strip()
        if "__" in word:
            names.add(word)
    return names


def choose_metrics(known: set[str]) -> tuple[dict[str, str], list[str]]:
    """(what -> metric name) for every wanted value with a known metric, and the wanted values without one."""
    chosen, missing = {}, []
    for what, candidates in METRICS.items():
        found = next((m for m in candidates if m.split(".", 1)[0] in known), None)
        if found:
            chosen[what] = found
        else:
            missing.append(what)
    return chosen, missing


def parse_ncu_csv(text: str) -> dict[str, float]:
    """Metric name -> value from `ncu --csv` output (one profiled kernel; thousands separators removed).
    Lines before the CSV header (the application's own output, ncu's ==PROF== notes) are skipped."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise ValueError("no CSV table in ncu's output:\n" + text[-2000:])
    values = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        name, value = row.get("Metric Name"), row.get("Metric Value", "")
        if not name:
            continue
        try:
            values[name] = float(value.replace(",", ""))
        except ValueError:
            continue
    return values


def per_warp_token(values: dict[str, float], chosen: dict[str, str], warps: int, tokens: int) -> dict:
    """The measured row: counts per warp and token, utilisations as percentages, cycles per token."""
    got = {what: values.get(name) for what, name in chosen.items()}
    row = {}
    if got.get("warp_instructions") is not None:
        row["instructions"] = got["warp_instructions"] / (warps * tokens)
    fp = [got.get(k) for k in ("ffma", "fmul", "fadd")]
    if all(v is not None for v in fp):
        row["fp32"] = sum(fp) / cm.WARP / (warps * tokens)
    for key in ("issue_active_pct", "warps_active_pct"):
        if got.get(key) is not None:
            row[key] = got[key]
    if got.get("sm_cycles") is not None:
        row["cycles_per_token"] = got["sm_cycles"] / tokens
    if "instructions" in row:
        stalls = {r: got[f"stall_{r}"] * row["instructions"] for r in STALL_REASONS
                  if got.get(f"stall_{r}") is not None}
        if stalls:
            row["stall_cycles"] = stalls  # warp-cycles per warp and token, by reason
    return row


def chain_terms(c: "cm.Counts") -> dict:
    """cost_model.chain_cycles' terms for one warp and token (they sum to it)."""
    lat = cm.LAT
    return {"issue (instructions x CPI_SOLO)": c.instructions * cm.CPI_SOLO,
            "own wavefronts and shuffles": c.wavefronts + c.shuffles,
            "shared-memory round trips": c.dep_smem * lat["smem"], "shuffle round trips": c.dep_shfl * lat["shfl"],
            "dependent ALU": c.dep_alu * lat["alu"],
            "global loads (L1, L2, DRAM)": c.dep_l1 * lat["l1"] + c.dep_l2 * lat["l2"] + c.dep_dram * lat["dram"],
            "syncs": c.syncs * lat["sync"]}


def predicted(n: int, S: int, kernel: str, gpu: str, entangler: str = "cnot") -> dict:
    """The model's row for the host's G: counts per warp and token, warps per SM, cycles per token, and the
    terms of one warp's chain per token."""
    k = cm.register_kernel(cm.GPUS[gpu], n, S, kernel, entangler)
    c = k["counts"]
    return {"lanes_per_state": k["lanes_per_state"], "instructions": c.instructions, "fp32": c.fp32,
            "warps_per_sm": k["warps_per_sm"], "cycles_per_token": k["cycles"], "bound": k["bound"],
            "chain": chain_terms(c)}


def run_case(kernel: str, n: int, S: int, T: int, entangler: str = "cnot") -> None:
    """The profiled process: one launch of the kernel (the backward's forward is profiled out by name)."""
    import torch

    import qlam  # noqa: F401  (loads the extension: torch.ops.qlam in this, the profiled, process)
    forward, backward = torch.ops.qlam._register_forward, torch.ops.qlam._register_backward
    if not torch.cuda.is_available():
        sys.exit("ncu_register.py --case: needs a CUDA GPU")
    g = torch.Generator(device="cuda").manual_seed(0)
    angles = torch.rand(S, T, 1, L, n, 3, device="cuda", generator=g) * 6.4 - 3.2
    ent = (torch.rand(S, T, 1, L, cm.num_pairs(n), device="cuda", generator=g) * 6.4 - 3.2
           if entangler == "rzz" else None)
    call = (angles, ent, None, None, entangler, False, 0)
    features, final, checkpoints = forward(*call, 0)
    if kernel == "backward":
        grad = torch.randn(features.shape, device="cuda", generator=g)
        backward(grad, None, angles, ent, final, checkpoints, None, entangler, False, 0, 0)
    torch.cuda.synchronize()


def markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Register kernels under Nsight Compute, against the cost model", "",
             f"GPU: {meta.get('gpu', '?')} (model: {meta['model_gpu']}). Command: `{meta['command']}`. n = {meta['n']}, "
             f"{meta['states']} states, {meta['tokens']} tokens, float32, H = 1, L = {L}, "
             f"{meta.get('entangler', 'cnot')}, no pair features; "
             "lanes per state: the host's choice. Per warp and token; the prologue is spread over the tokens.", "",
             "| kernel | G (model) | instructions (model) | FP32 (model) | issue active % | warps active % (model warps/SM) | "
             "cycles per token (model, bound) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(v, digits=0):
        return "n/a" if v is None else f"{v:,.{digits}f}"

    for r in rows:
        m, p = r["measured"], r["predicted"]
        lines.append(f"| {r['kernel']} | {m.get('lanes_per_state', '?')} ({p['lanes_per_state']}) | {fmt(m.get('instructions'))} ({fmt(p['instructions'])}) | "
                     f"{fmt(m.get('fp32'))} ({fmt(p['fp32'])}) | {fmt(m.get('issue_active_pct'), 1)} | "
                     f"{fmt(m.get('warps_active_pct'), 1)} ({p['warps_per_sm']}) | "
                     f"{fmt(m.get('cycles_per_token'))} ({fmt(p['cycles_per_token'])}, {p['bound']}) |")
    lines += stall_tables(rows)
    if meta.get("missing"):
        lines += ["", "Not collected (no such metric in this ncu): " + ", ".join(meta["missing"]) + "."]
    return "\n".join(lines) + "\n"


def stall_tables(rows: list[dict]) -> list[str]:
    """Measured: warp-cycles per warp and token by stall reason ('selected': issuing), the largest first;
    then the model's chain terms for the same kernels (they sum to its one-warp cycles per token)."""
    kernels = [r["kernel"] for r in rows]
    measured = {r["kernel"]: r["measured"].get("stall_cycles", {}) for r in rows}
    if not any(measured.values()):
        return []
    reasons = sorted({k for v in measured.values() for k in v}, key=lambda k: -max(v.get(k, 0) for v in measured.values()))
    head = "| " + " | ".join(kernels) + " |"
    rule = "| --- " * (len(kernels) + 1) + "|"
    out = ["", "Where a warp's cycles go, measured: warp-cycles per warp and token stalled for each reason "
           "(ncu's warps stalled per issue-active cycle x warp instructions per token; 'selected' is issuing).", "",
           "| stall reason " + head, rule]
    for reason in reasons:
        out.append(f"| {reason} | " + " | ".join(f"{measured[k].get(reason, 0):,.0f}" for k in kernels) + " |")
    out.append("| total | " + " | ".join(f"{sum(measured[k].values()):,.0f}" for k in kernels) + " |")
    chains = {r["kernel"]: r["predicted"].get("chain", {}) for r in rows}
    terms = list(next(iter(chains.values())))
    out += ["", "The model's one-warp chain per token (cost_model.chain_cycles' terms, cycles):", "",
            "| term " + head, rule]
    for term in terms:
        out.append(f"| {term} | " + " | ".join(f"{chains[k].get(term, 0):,.0f}" for k in kernels) + " |")
    out.append("| total | " + " | ".join(f"{sum(chains[k].values()):,.0f}" for k in kernels) + " |")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--states", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--entangler", choices=("cnot", "rzz"), default="cnot")
    parser.add_argument("--smnist", action="store_true",
                        help="the sMNIST config's training shape: n = 6, 256 states, rzz (overrides those options)")
    parser.add_argument("--case", choices=sorted(KERNELS), help=argparse.SUPPRESS)  # the profiled process
    args = parser.parse_args(argv)
    if args.smnist:
        args.n, args.states, args.entangler = SMNIST["n"], SMNIST["states"], SMNIST["entangler"]
    if args.case:
        run_case(args.case, args.n, args.states, args.tokens, args.entangler)
        return
    import torch

    import qlam
    from register_cuda import model_gpu
    from timing import machine, write_results
    if not (torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))):
        sys.exit("ncu_register.py: needs a CUDA GPU and qlam built with its CUDA kernels")
    ncu = find_ncu()
    if ncu is None:
        sys.exit("ncu_register.py: needs Nsight Compute's ncu (on PATH, in /usr/local/cuda/bin, or $QLAM_NCU)")
    chosen, missing = choose_metrics(known_metrics(ncu))
    if not chosen:
        sys.exit(f"ncu_register.py: {ncu} knows none of the metrics {sorted(METRICS)} wants")
    gpu = model_gpu(torch.cuda.get_device_name())
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for kernel in ("forward", "backward"):
        # units and metric names pinned: the parser reads bare values under the metrics' own names
        command = [ncu, "--csv", "--print-units", "base", "--print-metric-name", "name",
                   "--metrics", ",".join(chosen.values()), "--kernel-name", f"regex:{KERNELS[kernel]}",
                   "--launch-count", "1", sys.executable, os.path.abspath(__file__), "--case", kernel,
                   "--n", str(args.n), "--states", str(args.states), "--tokens", str(args.tokens),
                   "--entangler", args.entangler]
        out = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            sys.exit(f"ncu_register.py: ncu failed on the {kernel} (exit {out.returncode}):\n"
                     f"{out.stdout[-2000:]}{out.stderr[-3000:]}")  # ncu puts its ==ERROR== lines on stdout
        pred = predicted(args.n, args.states, kernel, gpu, args.entangler)
        # the lanes the launch used: the host's rule with this device's SMs (the model uses its GPU's)
        G = qlam._C.register_lanes_per_state(args.n, args.states, sms, False, kernel == "backward")
        measured = per_warp_token(parse_ncu_csv(out.stdout), chosen, math.ceil(args.states * G / cm.WARP),
                                  args.tokens)
        measured["lanes_per_state"] = G
        rows.append({"kernel": kernel, "measured": measured, "predicted": pred})
        print(rows[-1], flush=True)
    meta = machine()
    meta.update(command="python benchmarks/ncu_register.py " + " ".join(sys.argv[1:]), n=args.n, states=args.states,
                tokens=args.tokens, entangler=args.entangler, model_gpu=gpu, metrics=chosen, missing=missing)
    name = "ncu_register_smnist_cuda" if args.smnist else "ncu_register_cuda"
    paths = write_results(name, rows, markdown(rows, meta), meta)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
