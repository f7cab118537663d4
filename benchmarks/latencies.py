"""The latencies benchmarks/cost_model.py assumes, measured on this GPU, and the model's predictions redone
with them (issue 15).

    python benchmarks/latencies.py [--repeats 5]

At the sMNIST config's shape both CUDA programs are latency-bound: per token, one warp's chain of dependent
instructions, shuffles, shared-memory round trips, syncs and loads sets the time. The model prices that chain
with a handful of latencies (cost_model.LAT and CPI_SOLO), most of them assumed and one fitted. Here one warp
alone on the GPU times a chain of each kind of dependent operation with clock64
(`torch.ops.qlam._latency_probe`, csrc/cuda/latency_probe.cu):

    ffma        dependent FFMA                                     LAT["alu"]
    ffma_ilp    eight independent FFMA chains: cycles per issue    CPI_SOLO
    shfl        dependent __shfl_xor_sync (the program's mask)     LAT["shfl"]
    shfl_checked / shfl_unchecked
                a shuffle after a lane loop, with the group's per-thread mask (ptxas's convergence check,
                MATCH.ANY ... BRA.DIV, before it, as in the group kernels) and with the warp's constant
                mask (none, as in the G = 32 warp kernels): the difference is what a check costs
    syncwarp    __syncwarp after __syncwarp                        (reported)
    sync_phase  STS, __syncwarp, the neighbour's LDS, dependent    LAT["sync"] = sync_phase - lds
    lds         dependent shared-memory loads                      LAT["smem"]
    chase_l1    dependent global loads over 16 KiB, warmed         LAT["l1"]
    chase_l2    the same over 16 MiB, warmed (misses L1, fits L2)  LAT["l2"]
    chase_dram  the same over 1 GiB, L2 flushed first              LAT["dram"]
    stream      per step 512 dependent FFMAs, a sync, a load of a new line; with prefetch_l2 the line is
                hinted to L2 a step ahead as register_program.h does a token ahead: the load's exposed
                latency (cycles per step less the FFMAs') shows whether the prefetch turns DRAM into L2

Writes benchmarks/results/latencies_cuda.json and .md: each probe's cycles per operation (median over the
repeats, with the range) beside the value the model assumes, then the register and today's design at the
sMNIST shape and at issue 15's goal point (n = 8, 4,096 states), predicted with the assumed latencies and with
the measured ones. benchmarks/register_cuda.py adds the second prediction to its table when this file is
there for the same GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost_model  # noqa: E402

LINE_BYTES = 128          # one chase entry per cache line
STREAM_WORK = 512         # dependent FFMAs per stream step: ~2,000 cycles, longer than a DRAM load
STREAM_STEPS = 256

# name: (op probe, buffer, steps, warm, work, what the model calls it, what it stands for)
PROBES = {
    "ffma": ("ffma", None, 32 * 2048, 0, 0, 'LAT["alu"]', "dependent FFMA"),
    "ffma_ilp": ("ffma_ilp", None, 32 * 2048, 0, 0, "CPI_SOLO", "8 independent FFMA chains, per instruction"),
    "shfl": ("shfl", None, 32 * 1024, 0, 0, 'LAT["shfl"]', "dependent __shfl_xor_sync"),
    "shfl_checked": ("shfl_checked", None, 32 * 1024, 0, 0, "-",
                     "a lane loop, then a shuffle with the group's mask (convergence check)"),
    "shfl_unchecked": ("shfl_unchecked", None, 32 * 1024, 0, 0, "-",
                       "the same with the warp's constant mask (no check)"),
    "syncwarp": ("syncwarp", None, 32 * 1024, 0, 0, "-", "__syncwarp after __syncwarp"),
    "sync_phase": ("sync_phase", None, 32 * 1024, 0, 0, 'LAT["sync"] + LAT["smem"]',
                   "STS, __syncwarp, the neighbour's LDS, dependent"),
    "lds": ("lds", None, 32 * 1024, 0, 0, 'LAT["smem"]', "dependent LDS"),
    "chase_l1": ("chase", 16 << 10, 32 * 64, 2 * (16 << 10) // LINE_BYTES, 0, 'LAT["l1"]',
                 "dependent LDG over 16 KiB, warmed"),
    "chase_l2": ("chase", 16 << 20, 32 * 128, (16 << 20) // LINE_BYTES, 0, 'LAT["l2"]',
                 "dependent LDG over 16 MiB, warmed"),
    "chase_dram": ("chase", 1 << 30, 32 * 128, 0, 0, 'LAT["dram"]', "dependent LDG over 1 GiB, L2 flushed"),
    "stream": ("stream", "stream", STREAM_STEPS, 0, STREAM_WORK, "-",
               f"{STREAM_WORK} FFMAs, sync, load of a new line, per step"),
    "stream_prefetch_l2": ("stream_prefetch_l2", "stream", STREAM_STEPS, 0, STREAM_WORK, "-",
                           "the same, the line hinted to L2 a step ahead"),
}

# cost_model.LAT keys set from one probe each (the sync from two, below; CPI_SOLO from ffma_ilp).
PROBED_LAT = {"alu": "ffma", "shfl": "shfl", "smem": "lds", "l1": "chase_l1", "l2": "chase_l2",
              "dram": "chase_dram"}


def chase_indices(entries: int, generator=None, device="cpu"):
    """int64[entries]: one entry per 128-byte line holds the index of the next line's entry, the lines in one
    random cycle through all of them (so a chase from entry 0 visits every line before it repeats); the
    other entries are 0."""
    import torch

    per_line = LINE_BYTES // 8
    lines = entries // per_line
    if lines < 2 or entries % per_line:
        raise ValueError(f"chase_indices: {entries} entries is not a whole number (>= 2) of {per_line}-entry lines")
    order = torch.randperm(lines, generator=generator, device=device)
    nxt = torch.zeros(entries, dtype=torch.long, device=device)
    nxt[order * per_line] = torch.roll(order, -1) * per_line
    return nxt


def probed_latencies(cycles: dict) -> tuple[dict, float]:
    """cost_model's LAT and CPI_SOLO with the measured cycles per operation (probe name -> cycles) in place of
    the assumed ones. The sync: the measured phase turnaround less its LDS, which the model charges apart
    (dep_smem)."""
    lat = dict(cost_model.LAT)
    for key, probe in PROBED_LAT.items():
        lat[key] = cycles[probe]
    lat["sync"] = max(cycles["sync_phase"] - cycles["lds"], 0.0)
    return lat, cycles["ffma_ilp"]


def exposed_load(cycles: dict, probe: str) -> float:
    """A stream probe's cycles per step less its FFMAs' (the load's exposed latency, plus a few instructions
    of loop and sync)."""
    return cycles[probe] - STREAM_WORK * cycles["ffma"]


def predictions(gpu: str, lat: Optional[dict] = None, cpi: Optional[float] = None) -> list[dict]:
    """The sMNIST shape's rows (both designs; ms per step of scans) and the goal point's (n = 8, 4,096 states,
    cnot), with the model's latencies, or with lat and cpi in their place."""
    with cost_model.latencies(lat, cpi) if lat else contextlib.nullcontext():
        rows = [{"case": f"sMNIST {r['use']} ({r['states']} states)", "pass": r["pass"], "design": r["design"],
                 "ns_per_state_token": r["ns_per_state_token"], "ms_per_step": r["ms_per_step"],
                 "bound": r["bound"], "chain_cycles": r["latency_chain_cycles_per_token"]}
                for r in cost_model.smnist_rows(gpu)]
        for design in ("shared", "register"):
            for pass_ in cost_model.PASSES:
                r = cost_model.predict(design, gpu, 8, 4096, pass_)
                rows.append({"case": "n = 8, 4,096 states (goal)", "pass": pass_, "design": design,
                             "ns_per_state_token": r["ns_per_state_token"], "ms_per_step": None, "bound": r["bound"],
                             "chain_cycles": r["latency_chain_cycles_per_token"],
                             "fraction_of_peak": r["predicted_fraction_of_peak"]})
    return rows


def summarise(samples: dict) -> dict:
    """probe -> {median, min, max} cycles per operation, from its repeats."""
    return {p: {"median": statistics.median(v), "min": min(v), "max": max(v)} for p, v in samples.items()}


def markdown(stats: dict, gpu: str, meta: dict) -> str:
    cycles = {p: s["median"] for p, s in stats.items()}
    lat, cpi = probed_latencies(cycles)
    assumed = dict(cost_model.LAT, cpi=cost_model.CPI_SOLO)
    model_value = {"ffma": assumed["alu"], "ffma_ilp": assumed["cpi"], "shfl": assumed["shfl"],
                   "sync_phase": assumed["sync"] + assumed["smem"], "lds": assumed["smem"], "chase_l1": assumed["l1"],
                   "chase_l2": assumed["l2"], "chase_dram": assumed["dram"]}
    lines = [
        "# Latencies the cost model assumes, measured", "",
        f"GPU: {meta.get('gpu', '?')}; torch {meta.get('torch', '?')}. Command: `{meta.get('command', '?')}`. "
        "One warp alone, clock64 around a chain of dependent operations (csrc/cuda/latency_probe.cu); cycles per "
        f"operation, median of {meta.get('repeats', '?')} runs (range).", "",
        "| probe | what | model | assumed | measured (range) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (_, _, _, _, _, model_key, what) in PROBES.items():
        if name not in stats:
            continue
        s = stats[name]
        have = model_value.get(name)
        lines.append(f"| {name} | {what} | {model_key} | {'-' if have is None else f'{have:g}'} | "
                     f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}) |")
    if "shfl_checked" in cycles and "shfl_unchecked" in cycles:
        lines += ["", f"The convergence check before a sync or shuffle group of the group kernels (MATCH.ANY of the "
                  f"mask, REDUX.OR, VOTEU.ANY, BRA.DIV): {cycles['shfl_checked'] - cycles['shfl_unchecked']:.0f} "
                  "cycles each (shfl_checked - shfl_unchecked), which the G = 32 warp kernels do without; the model "
                  "has no term for it."]
    if "stream" in cycles and "stream_prefetch_l2" in cycles:
        lines += ["", f"A new line's load after {STREAM_WORK} dependent FFMAs and a sync, exposed (cycles per step "
                  f"less the FFMAs'): {exposed_load(cycles, 'stream'):.0f} cycles without the prefetch, "
                  f"{exposed_load(cycles, 'stream_prefetch_l2'):.0f} with the line hinted to L2 a step ahead "
                  f"(the model charges a prefetched angle load LAT[\"l2\"]: {assumed['l2']:g} assumed, "
                  f"{lat['l2']:.0f} measured)."]
    lines += [
        "", f"The model's predictions for the {gpu} with its latencies (assumed) and with these (measured: LAT "
        "from the probes, LAT[\"sync\"] = sync_phase - lds, CPI_SOLO = ffma_ilp):", "",
        "| case | pass | design | ns/state-token assumed | measured | ms per step assumed | measured | bound "
        "(assumed -> measured) | chain cycles per token (assumed -> measured) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    before, after = predictions(gpu), predictions(gpu, lat, cpi)
    for a, b in zip(before, after):
        ms = (f"| {a['ms_per_step']:.1f} | {b['ms_per_step']:.1f} " if a["ms_per_step"] is not None else "| - | - ")
        lines.append(f"| {a['case']} | {a['pass']} | {a['design']} | {a['ns_per_state_token']:.2f} | "
                     f"{b['ns_per_state_token']:.2f} {ms}| {a['bound']} -> {b['bound']} | "
                     f"{a['chain_cycles']} -> {b['chain_cycles']} |")
    return "\n".join(lines) + "\n"


def load(path: str, device_name: str) -> Optional[dict]:
    """benchmarks/results/latencies_cuda.json's medians (probe -> cycles) if it was measured on a GPU of this
    name, else None."""
    import json

    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("meta", {}).get("gpu") != device_name:
        return None
    return {r["probe"]: r["median"] for r in data["rows"]}


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latencies_cuda.json")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    import qlam
    from register_cuda import model_gpu
    from timing import machine, write_results

    if not (torch.cuda.is_available() and qlam._extension.supports(torch.device("cuda"))):
        sys.exit("latencies.py: needs a CUDA GPU and qlam built with its CUDA kernels")
    if args.repeats < 1:
        sys.exit(f"latencies.py: --repeats must be at least 1, got {args.repeats}")
    g = torch.Generator(device="cuda").manual_seed(0)
    anchor = torch.zeros(1, device="cuda")
    stream_data = torch.empty((STREAM_STEPS + 1) * (LINE_BYTES // 4), device="cuda")
    samples = {}
    for name, (probe, buffer, steps, warm, work, _, _) in PROBES.items():
        chase = None
        if isinstance(buffer, int):  # a new random cycle for each size; the op flushes L2 for a cold chase
            chase = chase_indices(buffer // 8, g, "cuda")
        for _ in range(args.repeats):
            buf = chase if chase is not None else stream_data if buffer == "stream" else anchor
            cycles, _check = torch.ops.qlam._latency_probe(buf, probe, steps, warm, work).tolist()
            samples.setdefault(name, []).append(cycles / steps)
        del chase
        print(name, f"{statistics.median(samples[name]):.1f} cycles", flush=True)
    stats = summarise(samples)
    meta = machine()
    meta.update(gpu=torch.cuda.get_device_name(), repeats=args.repeats,
                command="python benchmarks/latencies.py " + " ".join(sys.argv[1:]))
    gpu = model_gpu(meta["gpu"])
    lat, cpi = probed_latencies({p: s["median"] for p, s in stats.items()})
    meta.update(model_gpu=gpu, probed_latencies=lat, probed_cpi_solo=cpi, assumed_latencies=dict(cost_model.LAT),
                assumed_cpi_solo=cost_model.CPI_SOLO)
    rows = [{"probe": p, **s, "model": PROBES[p][5]} for p, s in stats.items()]
    paths = write_results("latencies_cuda", rows, markdown(stats, gpu, meta), meta)
    print(open(paths[1]).read())
    print("wrote", *paths)


if __name__ == "__main__":
    main()
