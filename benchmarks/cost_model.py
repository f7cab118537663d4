"""A cost model of the CUDA scan kernel: today's `shared` design and the proposed `register` design (issue 15).

    python benchmarks/cost_model.py

Predicts the fraction of FP32 peak of the scan (L = 2 layers, cnot ring, float32,
H = 1, no pair features, no checkpoints: what benchmarks/roofline.py measures) on
A100, H100 and H200 for n = 4..12 qubits and S = B*H = 256..65536 states, for the
forward and the forward+backward, and writes benchmarks/results/cost_model.{json,md};
then the same for the sMNIST config's shape (n = 6, rzz, 256 and 2,000 states) as time
per training or evaluation step's scans (smnist_rows).
Useful flops are benchmarks/flops.py's count, so the fraction is comparable with
roofline.py's. Nothing here is measured; the H200 rows of roofline_cuda.json are
the check (the markdown puts them side by side).

Counts, per warp and token, derived from the loop structure of csrc/state_program.h
and csrc/cuda/scan_cuda.cu (`shared`) or from the design of issue 15 (`register`):
warp-instructions, FP32 instructions, shared-memory wavefronts, shuffles, syncs,
and the latencies on one warp's dependent path. Shared-memory wavefronts come from
an exact simulation of the bank mapping: for every warp-wide access each lane's
32-bit word addresses are listed (Cplx<float> is 4-byte aligned, so re and im are
separate LDS.32/STS.32), bank = word mod 32, and an access costs the largest
number of distinct words any bank is asked for, summed over its phases (32 lanes
for 32-bit, half-warps for 64-bit, quarter-warps for 128-bit accesses).

Throughput, per SM holding w warps, cycles per token (every warp advances one token):
    issue    = ceil(w / 4) * instructions         (4 schedulers, one warp-instruction a cycle each)
    fp32     = ceil(w / 4) * fp32 * 32 / (lanes / 4)  (A100: 16 FP32 lanes per scheduler)
    mio      = w * (wavefronts + shuffles)         (one shared-memory wavefront or SHFL a cycle per SM)
    dram     = w * bytes / (bandwidth per SM per cycle)   (angles in, features or gradients out)
    latency  = one warp's dependent chain:
               instructions * CPI_SOLO + its own wavefronts and shuffles (the pipe takes them one a cycle)
               + smem round trips * LAT smem + dependent shuffles * LAT shfl + dependent ALU ops * LAT alu
               + L1 / DRAM loads waited for * their latency + syncs * LAT sync
    time     = max of the five (no overlap credit beyond the max: optimistic where two are close; OVERLAP =
               "chance", a sensitivity variant, replaces the latency bound by a smooth one, see sm_cycles).
The launch: blocks of warps (today: up to 8 per block, as many as 48 KiB allows)
are dealt round-robin over the SMs; as many stay resident as registers (64K
32-bit per SM, allocated per warp in units of 256), shared memory (per SM, plus
1 KiB per block) and the 64-warp / 32-block limits allow; further blocks run in
later waves. The launch takes the sum over waves of its busiest SM's time.
Predicted fraction = useful flops / (time * peak), peak = SMs * FP32 lanes * 2 * clock,
the same clock for time and peak (so it cancels except in the DRAM bound).

Assumptions (the ones a measurement should check first are marked *):
- GPUs: A100-SXM4-80GB 108 SMs, 1.41 GHz, 64 FP32 lanes/SM, 164 KiB shared/SM, 2.04 TB/s;
  H100-SXM5 132 SMs, 1.98 GHz (max boost), 128 lanes, 228 KiB, 3.35 TB/s; H200: as H100, 4.8 TB/s.
- Latencies (cycles; benchmarks/latencies.py measures them on a GPU and redoes the predictions with the
  measured values): shared load-to-use 30, shuffle 25, dependent ALU 4, L1 hit 40, L2 hit 260* (the
  register design's angles and feature gradients, prefetched to L2 a token ahead), DRAM 700*, a lone warp
  issues one instruction a cycle (CPI_SOLO = 1)* and its own wavefronts and shuffles pass the pipe one a
  cycle; __syncwarp (with the turnaround of each phase) 175*, the one parameter fitted: to the S = 1
  rows of roofline_cuda.json (fit_sync_latency; with a bare __syncwarp's 10-20 a lone warp's predicted
  time is 0.55-0.9 of the measured one at n = 4-8). The allreduce's 5 x values shuffles wait for each other (value by
  value, in-order issue; the backward's lone-warp times need it).
- Today's kernel: 72 / 80 registers (fwd / bwd, float32, from `-Xptxas -v` in issue 15);
  45.5 instructions per pair in the forward gate loop (SASS), of which 32 are its 12 loads,
  4 stores and 16 FP32 ops: the other 13.5 (int64 index arithmetic, addresses, loop) are
  charged to every loop over pairs, +4 for the CNOT's second inserted bit; the gate matrix is
  re-read in every iteration (psi and mats may alias); precise sinf/cosf 20 instructions.
- The register design as built (csrc/register_program.h, launched by csrc/cuda/register_cuda.cu; see
  register_counts), recalibrated 2026-11-26: registers per thread from tests/cuda/ptxas_budget.json, read
  at run time (register_forward_kernel<float, R>, with the paired layer loads and the norm's series:
  80 / 80 / 96 / 128 / 232 at R = 1 / 2 / 4 / 8 / 16, budgets rounded up to 8; no kernel, hence no G, for
  R >= 32; the backward's 96 / 96 / 120 / 128 / 255; at G = 32 the warp kernels', register_*_warp_kernel,
  forward 80 / 80 / 96 / 120 / 232 and backward 96 / 96 / 104 / 128 / 248). Occupancy from those: one-warp
  blocks, <= 32 blocks per SM, 64K registers allocated per warp in units of 256, the group scratch (960 /
  1536 bytes per state) in shared memory; at n = 8 that is 17 warps per SM at G = 32 and 8 at G = 16. Shuffles as the program does them and the emulation
  counted them (register_shuffles: a global gate fetches the partner's R amplitudes, 2R SHFL, no qubit
  remap; the forward reduces the qubits' features, 3 min(K + 5, 12) sums, by one reduce-scatter per token
  (a butterfly of 3 values per qubit, 3 n log2 G SHFL, until 2026-11-26's second session); the backward one
  reduce-scatter of 3 min(K + 5, 12) sums per layer). FP32 instructions per lane: 8R a
  gate forward, 24R backward (fma chains: gates.h cmul_add, undo_gate_pair_fused, 48 per pair; as the SASS
  shows; before them nvcc kept cmul's FMUL + FFMA and cadd's FADD apart: 10R and 32R), features 6R per local and 9R per global
  qubit, sources 12R per qubit, + rot_grad_parts per gate and lane backward; matrices built two layers at
  a time, spread over the lanes (a sync before and one after each pair of layers), and read by every lane
  (8 LDS.32, + 6 trig backward, bank conflicts between groups simulated); each pair's angles loaded on the
  dependent path from L2, where the previous token's prefetch put them; the local
  CNOTs' register permutation materialised per layer (2R moves per state array). G per point: the host's
  choice (register_program.h choose_lanes_per_state, mirrored by host_lanes: the fewest lanes with R <= 16,
  then more while the SMs would get fewer than 4 warps each), the best G beside it; today's program where it
  is faster. Instruction-cache
  misses of the unrolled code are not modelled* (the rough static code size is reported).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flops import backward_flops, forward_flops, num_pairs  # noqa: E402

L = 2
NS = tuple(range(4, 13))
STATES = (256, 1024, 4096, 16384, 65536)
PASSES = ("forward", "forward+backward")
WARP = 32


# ---------------------------------------------------------------- machines

@dataclass(frozen=True)
class GPU:
    name: str
    sms: int
    clock_ghz: float
    fp32_lanes: int          # FP32 FMA lanes per SM
    smem_per_sm: int         # bytes of shared memory an SM can give its blocks
    smem_per_block: int      # opt-in maximum per block
    dram_gbs: float

    @property
    def peak_gflops(self) -> float:
        return self.sms * self.fp32_lanes * 2 * self.clock_ghz

    @property
    def dram_bytes_per_sm_cycle(self) -> float:
        return self.dram_gbs / (self.sms * self.clock_ghz)


GPUS = {
    "A100": GPU("A100", 108, 1.41, 64, 164 * 1024, 163 * 1024, 2039.0),
    "H100": GPU("H100", 132, 1.98, 128, 228 * 1024, 227 * 1024, 3350.0),
    "H200": GPU("H200", 132, 1.98, 128, 228 * 1024, 227 * 1024, 4800.0),
}

REGS_PER_SM = 65536
REG_UNIT = 256                 # registers are allocated per warp in units of 256
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
SMEM_RESERVED_PER_BLOCK = 1024
SCHEDULERS = 4                 # one warp-instruction per cycle each
MAX_REGS_PER_THREAD = 255

# Latencies in cycles (see the module docstring).
LAT = {"smem": 30, "shfl": 25, "sync": 175, "alu": 4, "l1": 40, "l2": 260, "dram": 700}
CPI_SOLO = 1.0


@contextmanager
def latencies(lat: dict, cpi_solo: float):
    """Predictions inside use these latencies and CPI_SOLO (benchmarks/latencies.py: measured ones); the
    model's own come back on leaving."""
    global CPI_SOLO
    saved = dict(LAT), CPI_SOLO
    LAT.update(lat)
    CPI_SOLO = cpi_solo
    try:
        yield
    finally:
        LAT.clear()
        LAT.update(saved[0])
        CPI_SOLO = saved[1]


# ---------------------------------------------------------------- the bank simulation


def wavefronts(lane_words: list[Optional[int]], access_bytes: int = 4) -> int:
    """Shared-memory wavefronts of one warp-wide access.

    lane_words[lane] is the first 32-bit word the lane touches (None: inactive);
    a 64-bit access touches two words, a 128-bit one four. Each phase (32 lanes
    for 32-bit, half-warps for 64-bit, quarter-warps for 128-bit) costs the most
    distinct words any of the 32 banks (bank = word mod 32) must deliver; lanes
    asking for the same word share it (broadcast)."""
    words = access_bytes // 4
    per_phase = WARP // words
    total = 0
    for start in range(0, WARP, per_phase):
        banks: dict[int, set[int]] = {}
        for w in lane_words[start:start + per_phase]:
            if w is None:
                continue
            for k in range(words):
                banks.setdefault((w + k) % 32, set()).add(w + k)
        total += max((len(s) for s in banks.values()), default=0)
    return total


def insert_zero_bit(p: int, q: int) -> int:
    """gates.h: the p-th index whose bit q is 0."""
    low = p & ((1 << q) - 1)
    return ((p >> q) << (q + 1)) | low


def lane_batches(count: int) -> list[list[Optional[int]]]:
    """The items p = lane, lane + 32, ... of a `for (p = lane; p < count; p += 32)` loop, a list per iteration."""
    return [[p if p < count else None for p in range(it, it + WARP)] for it in range(0, count, WARP)]


def amp_words(indices: list[Optional[int]], part: int, base: int = 0) -> list[Optional[int]]:
    """Word addresses of the re (part 0) or im (part 1) halves of Cplx<float> amplitudes."""
    return [None if i is None else base + 2 * i + part for i in indices]


def amp_access(indices: list[Optional[int]], base: int = 0) -> int:
    """Wavefronts of reading (or writing) one complex amplitude per lane: two 32-bit accesses."""
    return wavefronts(amp_words(indices, 0, base)) + wavefronts(amp_words(indices, 1, base))


def matrix_reads(batch: list[Optional[int]], mats_word: int, q: int) -> int:
    """Wavefronts of reading gate q's 2x2 complex matrix (8 words at mats + 8 q), every active lane the same
    word at a time: broadcasts."""
    return sum(wavefronts([None if p is None else mats_word + 8 * q + k for p in batch]) for k in range(8))


# ---------------------------------------------------------------- counts


@dataclass
class Counts:
    """One warp's work for one token."""
    instructions: float = 0.0   # warp-instructions issued
    fp32: float = 0.0           # of which go to the FP32 pipe (FFMA, FMUL, FADD)
    smem: float = 0.0           # of which are shared loads and stores
    wavefronts: float = 0.0     # shared-memory wavefronts
    shuffles: float = 0.0       # SHFL warp-instructions
    syncs: float = 0.0          # __syncwarp
    dep_smem: float = 0.0       # shared-memory round trips on the warp's dependent path
    dep_shfl: float = 0.0       # shuffle round trips on it
    dep_alu: float = 0.0        # dependent ALU results waited for
    dep_l1: float = 0.0         # global loads that hit L1, waited for
    dep_l2: float = 0.0         # global loads that hit L2 (prefetched there), waited for
    dep_dram: float = 0.0       # global loads from DRAM, waited for

    def __add__(self, o: "Counts") -> "Counts":
        return Counts(**{f.name: getattr(self, f.name) + getattr(o, f.name) for f in fields(self)})

    def __mul__(self, k: float) -> "Counts":
        return Counts(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    __rmul__ = __mul__


def total(parts) -> Counts:
    out = Counts()
    for p in parts:
        out = out + p
    return out


def chain_cycles(c: Counts) -> float:
    """One warp's time for one token when nothing else competes (the latency bound)."""
    return (c.instructions * CPI_SOLO + c.wavefronts + c.shuffles  # its own accesses pass the pipe one by one
            + c.dep_smem * LAT["smem"] + c.dep_shfl * LAT["shfl"] + c.dep_alu * LAT["alu"]
            + c.dep_l1 * LAT["l1"] + c.dep_l2 * LAT["l2"] + c.dep_dram * LAT["dram"] + c.syncs * LAT["sync"])


# ---------------------------------------------------------------- today's design: one warp per state in shared memory

IDX = 45.5 - (12 + 4 + 16)  # int64 index, address and loop instructions per pair-loop iteration (SASS: 45.5 in all)
IDX_CNOT = IDX + 4          # a second inserted bit and the control bit
LOOP = 4                    # a plain `i += 32` loop: add, compare, branch, address
TRIG = 20                   # precise sinf/cosf, small-argument path
TRIG_DEPTH = 13             # its dependent chain (range reduction, polynomial, sign)
BRANCH = 4                  # a lane-0-only section: predicate, BSSY/BSYNC
SYNC = Counts(instructions=1, syncs=1)


def allreduce(values: int, double: bool = False) -> Counts:
    """WarpExecutor::allreduce: 5 xor-shuffle levels per value (a double is two SHFL), then a __syncwarp. The loop
    runs value by value and each level needs the one before, so with in-order issue every shuffle waits for
    the previous one (the S = 1 rows of roofline_cuda.json agree; interleaved values would not)."""
    shfl = 5 * values * (2 if double else 1)
    return Counts(instructions=shfl + 5 * values, fp32=0 if double else 5 * values, shuffles=shfl,
                  dep_shfl=5 * values, dep_alu=5 * values * (2 if double else 1)) + SYNC


def load_layer(n: int, mats_word: int) -> Counts:
    """Lanes q < n build gate q's matrix: 3 angle loads (DRAM), 6 precise trig, 8 products, 8 STS.32; then a sync."""
    waves = 0
    for k in range(8):  # lane q writes word mats + 8 q + k
        waves += wavefronts([mats_word + 8 * q + k if q < n else None for q in range(WARP)])
    per_lane = 3 + 5 + 6 * TRIG + 8 + 8 + 6
    return Counts(instructions=per_lane, fp32=13, smem=8, wavefronts=waves, dep_dram=1,
                  dep_alu=TRIG_DEPTH + 2) + SYNC


def gate_forward(n: int, q: int, mats_word: int) -> Counts:
    """apply_1q_pairs: per iteration 4 LDS + 8 matrix LDS (re-read: psi and mats may alias) + 16 FP32 + 4 STS."""
    c = Counts()
    for batch in lane_batches(1 << (n - 1)):
        i0 = [None if p is None else insert_zero_bit(p, q) for p in batch]
        i1 = [None if i is None else i + (1 << q) for i in i0]
        waves = 2 * (amp_access(i0) + amp_access(i1)) + matrix_reads(batch, mats_word, q)  # psi loads, stores
        c = c + Counts(instructions=12 + 4 + 16 + IDX, fp32=16, smem=16, wavefronts=waves,
                       dep_smem=2, dep_alu=8)  # psi after the last store, m[2..3] after psi[i0]'s store
    return c + SYNC


def cnot_indices(n: int, c: int, t: int, batch):
    lo, hi = min(c, t), max(c, t)
    i = [None if p is None else insert_zero_bit(insert_zero_bit(p, lo), hi) | (1 << c) for p in batch]
    j = [None if x is None else x | (1 << t) for x in i]
    return i, j


def cnot(n: int, c: int, t: int, states: int = 1) -> Counts:
    """apply_cnot_pairs on `states` statevectors (psi; the backward also lam, at word 2 N): 2 LDS.32 + 2 STS.32
    per amplitude and state."""
    out = Counts()
    for batch in lane_batches(1 << (n - 2)):
        i, j = cnot_indices(n, c, t, batch)
        waves = sum(2 * (amp_access(i, 2 * (1 << n) * s) + amp_access(j, 2 * (1 << n) * s)) for s in range(states))
        out = out + Counts(instructions=8 * states + IDX_CNOT, smem=8 * states, wavefronts=waves, dep_smem=1)
    return out + SYNC


# gates.h norm_scale, the factor sqrt(target / now) from the target's inverse: a DMUL, a DADD, the range test,
# two DFMA and the F2F to float, one after another (FP64 results at ~8 cycles: 2 dependent-ALU units each). It
# was the double division and square root until 2026-11-26's fifth session: 30 instructions, 50 units.
NORM_SCALE = Counts(instructions=8, dep_alu=12)


def restore_norm(n: int) -> Counts:
    """squared_norm in double (F2F, DFMA), its allreduce, sqrt(target / now) (NORM_SCALE), then the scaling
    pass."""
    N = 1 << n
    out = Counts()
    for batch in lane_batches(N):
        out = out + Counts(instructions=2 + 2 + 2 + LOOP, smem=2, wavefronts=amp_access(batch), dep_alu=4)
    out = out + allreduce(1, double=True) + NORM_SCALE
    for batch in lane_batches(N):
        out = out + Counts(instructions=2 + 2 + 2 + LOOP, fp32=2, smem=4, wavefronts=2 * amp_access(batch),
                           dep_smem=1, dep_alu=1)
    return out + SYNC


def measure_qubit(n: int, q: int) -> Counts:
    """measure_features for qubit q: 4 LDS + 11 FP32 per pair (no stores: the loads pipeline), allreduce of 3,
    lane 0 writes 3 features."""
    out = Counts(dep_smem=1)
    for batch in lane_batches(1 << (n - 1)):
        i0 = [None if p is None else insert_zero_bit(p, q) for p in batch]
        i1 = [None if i is None else i + (1 << q) for i in i0]
        out = out + Counts(instructions=4 + 11 + IDX, fp32=11, smem=4, wavefronts=amp_access(i0) + amp_access(i1),
                           dep_alu=1)
    return out + allreduce(3) + Counts(instructions=2 + 3 + BRANCH)


def feature_source(n: int, q: int) -> Counts:
    """add_feature_sources for qubit q: M from 3 global gradients (first qubit from DRAM, then L1), per pair
    4 LDS psi + 4 LDS lam + 20 FP32 + 4 STS lam."""
    lam = 2 * (1 << n)
    out = Counts(instructions=3 + 4, dep_dram=1 if q == 0 else 0, dep_l1=0 if q == 0 else 1)
    for batch in lane_batches(1 << (n - 1)):
        i0 = [None if p is None else insert_zero_bit(p, q) for p in batch]
        i1 = [None if i is None else i + (1 << q) for i in i0]
        waves = amp_access(i0) + amp_access(i1) + 2 * (amp_access(i0, lam) + amp_access(i1, lam))
        out = out + Counts(instructions=8 + 4 + 20 + IDX, fp32=20, smem=12, wavefronts=waves, dep_smem=2, dep_alu=6)
    return out + SYNC


def gate_backward(n: int, q: int, mats_word: int) -> Counts:
    """The backward gate: 8 broadcast LDS of the matrix (md, once: it is copied to registers), per pair 8 LDS
    + 48 FP32 + 8 STS (psi and lam), allreduce of the 8 sums, lane 0 runs rot_grad (angles from L1, 6 precise
    trig), sync."""
    lam = 2 * (1 << n)
    out = Counts(instructions=8, smem=8, wavefronts=matrix_reads(list(range(WARP)), mats_word, q))
    for batch in lane_batches(1 << (n - 1)):
        i0 = [None if p is None else insert_zero_bit(p, q) for p in batch]
        i1 = [None if i is None else i + (1 << q) for i in i0]
        waves = 2 * (amp_access(i0) + amp_access(i1) + amp_access(i0, lam) + amp_access(i1, lam))
        out = out + Counts(instructions=16 + 48 + IDX, fp32=48, smem=16, wavefronts=waves, dep_smem=1, dep_alu=8)
    rot_grad = Counts(instructions=3 + 2 + 6 * TRIG + 43 + 3 + BRANCH, fp32=45, dep_l1=1, dep_alu=TRIG_DEPTH + 10)
    return out + allreduce(8) + rot_grad + SYNC


# rzz (gates.h rzz_factor, per pair and amplitude): the pair's cos and sin (2 loads), z_p z_p' from two index
# bits (shift, xor, and), the sign's select, and the complex update (2 FMUL + 2 FFMA), two of them dependent
RZZ_PAIR = 2 + 3 + 1 + 4


def rzz_layer(n: int, states: int = 1) -> Counts:
    """apply_rzz_layer on `states` arrays (psi; the backward's inverse also lam, at word 2 N): per amplitude the
    factor over the P pairs, their cos and sin re-read from shared memory (broadcasts), then 2 LDS.32, a complex
    multiply (4 FP32) and 2 STS.32; one sync after."""
    N, P = 1 << n, num_pairs(n)
    out = Counts()
    for batch in lane_batches(N):
        waves = sum(2 * amp_access(batch, 2 * N * s) for s in range(states)) + states * 2 * P
        out = out + Counts(instructions=states * (P * RZZ_PAIR + 4 + 4 + LOOP), fp32=states * (4 * P + 4),
                           smem=states * (2 * P + 4), wavefronts=waves, dep_smem=1, dep_alu=2 * P)
    return out + SYNC


def rzz_gradients(n: int) -> Counts:
    """The backward's rzz angle gradients (state_program.h): per amplitude psi and lam loaded (4 LDS.32),
    w = Im(conj(lam) psi) (2 FP32), then per pair the signed add (z z' bits 3, select, FADD); an allreduce of
    the P sums; lane 0 writes them."""
    N, P = 1 << n, num_pairs(n)
    out = Counts()
    for batch in lane_batches(N):
        waves = amp_access(batch) + amp_access(batch, 2 * N)
        out = out + Counts(instructions=4 + 2 + P * 5 + LOOP, fp32=2 + P, smem=4, wavefronts=waves, dep_smem=1)
    return out + allreduce(P) + Counts(instructions=BRANCH + 3 * P)


def load_layer_rzz(n: int) -> Counts:
    """load_layer's rzz part: lanes p < P load pair p's angle and store its cos and sin (2 precise trig calls)."""
    return Counts(instructions=3 + 2 * TRIG + 2 + 2, fp32=1, smem=2, wavefronts=2, dep_alu=TRIG_DEPTH)


@lru_cache(maxsize=None)
def shared_counts(n: int, kernel: str, entangler: str = "cnot") -> Counts:
    """Per warp (= per state) and token, the program of state_program.h with the cnot ring (or rzz), L layers,
    float32."""
    N = 1 << n
    pairs = [(p, (p + 1) % n) for p in range(num_pairs(n))]
    mats = 2 * N * (1 if kernel == "forward" else 2)
    rzz = entangler == "rzz"
    parts = [Counts(instructions=10)]  # token loop, length and checkpoint tests
    if kernel == "forward":
        for _ in range(L):
            parts.append(load_layer(n, mats))
            if rzz:
                parts.append(load_layer_rzz(n))
            parts += [gate_forward(n, q, mats) for q in range(n)]
            parts += [rzz_layer(n)] if rzz else [cnot(n, c, t) for c, t in pairs]
        parts.append(restore_norm(n))
        parts += [measure_qubit(n, q) for q in range(n)]
        parts.append(SYNC)
    else:
        parts += [feature_source(n, q) for q in range(n)]
        for _ in range(L):
            parts.append(load_layer(n, mats))
            if rzz:
                parts += [load_layer_rzz(n), rzz_gradients(n), rzz_layer(n, states=2)]
            else:
                parts += [cnot(n, c, t, states=2) for c, t in reversed(pairs)]
            parts += [gate_backward(n, q, mats) for q in reversed(range(n))]
        parts.append(restore_norm(n))
    return total(parts)


def shared_scratch_bytes(n: int, kernel: str) -> int:
    """warp_scratch_bytes of scan_cuda.cu: N complex per state (1 forward, 2 backward) + 4 n complex + (2 P + 1)
    reals, rounded to 16 (ops.cpp sets P = num_pairs(n) whatever the entangler)."""
    states = 1 if kernel == "forward" else 2
    raw = 8 * (states * (1 << n) + 4 * n) + 4 * (2 * num_pairs(n) + 1)
    return (raw + 15) // 16 * 16


SHARED_REGS = {"forward": 72, "backward": 80}  # float32, -Xptxas -v (issue 15)


def regs_per_warp(regs_per_thread: int) -> int:
    return math.ceil(regs_per_thread * WARP / REG_UNIT) * REG_UNIT


def blocks_per_sm(gpu: GPU, warps_per_block: int, regs_per_thread: int, smem_per_block: int) -> int:
    return max(0, min(MAX_BLOCKS_PER_SM, MAX_WARPS_PER_SM // warps_per_block,
                      REGS_PER_SM // (warps_per_block * regs_per_warp(regs_per_thread)),
                      gpu.smem_per_sm // (smem_per_block + SMEM_RESERVED_PER_BLOCK)))


# ---------------------------------------------------------------- throughput and the launch

BOUNDS = ("issue", "fp32", "mio", "dram", "latency")


# How one warp's stalls overlap the other warps' work: "max" (the model: time = the largest bound, full
# overlap), or "chance" (a sensitivity variant: each of the w warps of a scheduler is ready a fraction
# p = (its issue or FP32 cycles) / (its chain) of the time, independently, so the scheduler is busy
# 1 - (1 - p)**w of it; equal to the chain for one warp and to the throughput bound for many).
OVERLAP = "max"


def sm_cycles(gpu: GPU, c: Counts, w: int, dram_bytes: float) -> dict:
    """Cycles per token of an SM holding w warps that each do the work c (and move dram_bytes)."""
    per_scheduler = math.ceil(w / SCHEDULERS)
    fp32_rate = gpu.fp32_lanes / SCHEDULERS / WARP  # FP32 warp-instructions per cycle per scheduler
    chain = chain_cycles(c)
    if OVERLAP == "chance" and chain > 0:
        busy = max(c.instructions, c.fp32 / fp32_rate)
        p = min(1.0, busy / chain)
        chain = per_scheduler * busy / (1 - (1 - p) ** per_scheduler)
    return {
        "issue": per_scheduler * c.instructions,
        "fp32": per_scheduler * c.fp32 / fp32_rate,
        "mio": w * (c.wavefronts + c.shuffles),
        "dram": w * dram_bytes / gpu.dram_bytes_per_sm_cycle,
        "latency": chain,
    }


def launch_cycles(gpu: GPU, c: Counts, dram_bytes: float, warps: int, warps_per_block: int,
                  resident_blocks: int) -> tuple[float, str, int]:
    """Cycles per token of a launch of `warps` warps in blocks of warps_per_block (the last block partial),
    dealt round-robin over the SMs, resident_blocks per SM at a time; returns (cycles, bound of the
    costliest wave, waves)."""
    blocks = math.ceil(warps / warps_per_block)
    last = warps - (blocks - 1) * warps_per_block  # warps of the last block
    per_wave = gpu.sms * resident_blocks
    cycles, worst, bound, waves = 0.0, -1.0, "", 0
    for first in range(0, blocks, per_wave):
        in_wave = min(per_wave, blocks - first)

        def warps_on(sm: int) -> int:  # block first + i goes to SM i mod SMs
            count = (in_wave - 1 - sm) // gpu.sms + 1 if sm < in_wave else 0
            holds_last = first + in_wave == blocks and (in_wave - 1) % gpu.sms == sm
            return count * warps_per_block - (warps_per_block - last if holds_last else 0)

        busiest = max(warps_on(0), warps_on(1))  # SM 0 has the most blocks; SM 1 too if SM 0 got the partial one
        t = sm_cycles(gpu, c, busiest, dram_bytes)
        wave = max(t.values())
        cycles += wave
        waves += 1
        if wave > worst:
            worst, bound = wave, max(t, key=t.get)
    return cycles, bound, waves


def dram_bytes(n: int, kernel: str, entangler: str = "cnot") -> float:
    """Bytes per state-token that must move: angles in and features out (forward); angles, feature gradients
    in and angle gradients out (backward). The state itself stays on chip."""
    A, K = 3 * L * n + (L * num_pairs(n) if entangler == "rzz" else 0), 3 * n
    return 4.0 * (A + K if kernel == "forward" else 2 * A + K)


def shared_kernel(gpu: GPU, n: int, S: int, kernel: str, entangler: str = "cnot") -> dict:
    """Prediction for today's kernel: one warp per state, launched as scan_cuda.cu's launch() does."""
    c = shared_counts(n, kernel, entangler)
    per_warp = shared_scratch_bytes(n, kernel)
    if per_warp > gpu.smem_per_block:
        return {}
    wpb = max(1, min(8, (48 * 1024) // per_warp, S))
    resident = blocks_per_sm(gpu, wpb, SHARED_REGS[kernel], wpb * per_warp)
    cycles, bound, waves = launch_cycles(gpu, c, dram_bytes(n, kernel, entangler), S, wpb, resident)
    return {"program": "shared", "cycles": cycles, "bound": bound, "waves": waves, "counts": c, "states_per_warp": 1,
            "lanes_per_state": WARP, "warps_per_sm": wpb * resident, "regs": SHARED_REGS[kernel],
            "chain": chain_cycles(c)}


# ---------------------------------------------------------------- the register design, as built

# The program is csrc/register_program.h (forward and backward), launched by csrc/cuda/register_cuda.cu:
# one warp per block, its 32 / G groups of G lanes each running one state, R = 2**n / G amplitudes per lane
# in registers (R a template parameter), the group's scratch (gate matrices, double-buffered by layer) in
# dynamic shared memory. A gate on a global qubit fetches the partner lane's R amplitudes with xor-shuffles
# (no qubit remap); the features are reduced by one reduce-scatter per token, the backward's angle gradients
# by one per layer.

MAT_PREP = 3 + 5 + 6 * TRIG + 8    # one gate's matrix from its angles (owner lane): loads, half-angles, trig, products
ROT_GRAD = 43                       # gates.h rot_grad_parts from the six trig values and S (every lane, every gate)
MAX_QUBITS = 12                     # gates.h kMaxQubits: the scratch arrays' size
MAX_GLOBAL_QUBITS = 5               # register_program.h kMaxGlobalQubits (G <= 32)
# sizeof(GroupScratch<float>) (mats[2][4 * 12] complex, gzz[2][2 * 12]) and BackwardScratch<float> (+ trig[2][6 * 12])
SCRATCH_BYTES = {"forward": 2 * 4 * MAX_QUBITS * 8 + 2 * 2 * MAX_QUBITS * 4,
                 "backward": 2 * 4 * MAX_QUBITS * 8 + 2 * 2 * MAX_QUBITS * 4 + 2 * 6 * MAX_QUBITS * 4}

PTXAS_BUDGET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "cuda",
                            "ptxas_budget.json")
# The backward kernel's registers where tests/cuda/ptxas_budget.json has no entry for it yet. register_program.h's
# backward comment quotes R = 8: 128, R = 16: 255 (nvcc 13, sm_90, float32, no spills; R = 32 spills 4.6 KB, not
# allowed here); the rest were measured for this recalibration (2026-11-26) by `nvcc -cubin --resource-usage`
# (nvcc 13.0, sm_90) on register_cuda.cu's register_backward_kernel<float, R> as another change was adding it
# (uncommitted): 87 / 96 / 110 / 128 / 255 at R = 1 / 2 / 4 / 8 / 16, no spills. The JSON's entries, once
# there, take precedence.
BACKWARD_REGS_QUOTED = {1: 87, 2: 96, 4: 110, 8: 128, 16: 255}


@lru_cache(maxsize=None)
def ptxas_budget() -> dict:
    """tests/cuda/ptxas_budget.json's kernels (read once per process, so the model follows the budgets)."""
    if not os.path.exists(PTXAS_BUDGET):
        return {}
    with open(PTXAS_BUDGET) as f:
        return json.load(f).get("kernels", {})


def register_regs(kernel: str, R: int, G: int = 0) -> Optional[tuple[int, str]]:
    """Registers per thread of the kernel that runs R amplitudes per lane on G lanes, and where the number comes
    from, or None where that R has no kernel that fits (R = 32 spills; R > 16 is not instantiated): at G = 32
    register_{kernel}_warp_kernel<float, R> (the warp's constant mask), else register_{kernel}_kernel<float, R>.
    The JSON's numbers are budgets: the ptxas count rounded up to the allocation granularity (8 per thread),
    which gives the same occupancy."""
    budget = ptxas_budget()
    entry = budget.get(f"register_{kernel}_warp_kernel<float, {R}>") if G == WARP else None
    entry = entry if entry is not None else budget.get(f"register_{kernel}_kernel<float, {R}>")
    if entry is not None:
        if entry.get("spill_bytes", 0) > 0:
            return None
        return min(entry["registers"], MAX_REGS_PER_THREAD), "ptxas_budget.json"
    if kernel == "backward" and R in BACKWARD_REGS_QUOTED:
        return BACKWARD_REGS_QUOTED[R], "register_program.h / nvcc 13.0 on the uncommitted backward kernel"
    return None


def reduce_scatter_shuffles(values: int, G: int) -> int:
    """register_program.h reduce_scatter: SHFL per lane to reduce `values` sums over G lanes by recursive
    halving: at each of the log2 G levels a lane keeps half of its values (ceil) and receives the partner's
    partial sums of that half, one xor-shuffle per kept value."""
    shfl, v = 0, values
    for _ in range(int(math.log2(G))):
        v = (v + 1) // 2
        shfl += v
    return shfl


def qubit_slots(K: int) -> int:
    """register_program.h QubitSlots<R>: min(K + 5, 12) qubit slots of the forward's feature sums and the
    backward's gradient sums (the most qubits a group of 2**K-amplitude lanes can have)."""
    return min(K + MAX_GLOBAL_QUBITS, MAX_QUBITS)


def register_shuffles(n: int, G: int, kernel: str, entangler: str = "cnot") -> dict:
    """SHFL instructions per lane and token of the program as built (float32, cnot ring or rzz, no pair
    features), by phase: a complex exchange is 2 SHFL, the float32 norm's double 2 SHFL a level. They are the
    counts of the instrumented CPU emulation (tests/test_cost_model.py). rzz exchanges nothing (a diagonal),
    and its backward reduces 4 sums per qubit slot (the pair's with the gate's 3)."""
    R = (1 << n) // G
    K, g = int(math.log2(R)), int(math.log2(G))
    ring = 1 if (K >= 1 and g >= 1 and entangler == "cnot") else 0  # the (K-1, K) exchange: R/2 complex per array
    stride = 4 if entangler == "rzz" else 3
    if kernel == "forward":
        return {"rotations": L * g * 2 * R,            # each global gate: the partner's R amplitudes
                "ring": L * ring * R,
                "features": g * 2 * R,                  # <X>, <Y> of each global qubit: the partner's amplitudes
                "reductions": reduce_scatter_shuffles(3 * qubit_slots(K), G),  # the qubits' features, once
                "norm": 2 * g}
    return {"rotations": L * g * 4 * R,                 # psi and lam both cross
            "ring": L * ring * 2 * R,
            "features": g * 2 * R,                      # the sources' partner along each global qubit
            "reductions": L * reduce_scatter_shuffles(stride * qubit_slots(K), G),
            "norm": 2 * g}


@lru_cache(maxsize=None)
def transpose_wavefronts(G: int, A: int, layout="swizzle") -> tuple[int, int]:
    """Simulated wavefronts of one remap through shared memory for one warp: every lane writes its A complex
    amplitudes (64-bit STS) and reads A back in the new layout (64-bit LDS), which swaps the s = min(g, k)
    lowest lane-in-state bits with the s highest register bits (g = log2 G, k = log2 A). Element (lane l,
    register r) sits at 8-byte slot r * 32 + (l ^ top s bits of r) with layout "swizzle", or at
    r * (32 + pad) + l with an integer pad. Returns (write wavefronts, read wavefronts); the ideal is 2 A each.
    Not used by the program as built (it has no remap); kept for a qubit remap through shared memory, which
    should use the XOR swizzle: padding alone conflicts whenever k > g."""
    g, k = int(math.log2(G)), int(math.log2(A))
    s = min(g, k)
    mask = (1 << s) - 1

    def slot(lane: int, r: int) -> int:
        if layout == "swizzle":
            return r * WARP + (lane ^ ((r >> (k - s)) & mask))
        return r * (WARP + layout) + lane

    write = sum(wavefronts([2 * slot(lane, r) for lane in range(WARP)], 8) for r in range(A))
    read = 0
    for r_new in range(A):
        words = []
        for lane_new in range(WARP):
            top = (r_new >> (k - s)) & mask                 # becomes the old lane's low s bits
            lane_old = (lane_new & ~mask) | top
            r_old = (r_new & ~(mask << (k - s))) | ((lane_new & mask) << (k - s))
            words.append(2 * slot(lane_old, r_old))
        read += wavefronts(words, 8)
    return write, read


@lru_cache(maxsize=None)
def scratch_wavefronts(G: int, kernel: str, words: int, own_row: bool = False) -> int:
    """Simulated wavefronts of `words` 32-bit reads of the group scratch, every lane of group i reading word
    i * (scratch words) + c (a broadcast within the group; groups conflict when their scratch starts in the
    same bank). own_row: lanes whose global bit is set read another entry (the gate's other row)."""
    stride = SCRATCH_BYTES[kernel] // 4
    total_waves = 0
    for c in range(words):
        lanes = [(lane // G) * stride + c + (8 if own_row and lane % G >= G // 2 and G > 1 else 0)
                 for lane in range(WARP)]
        total_waves += wavefronts(lanes)
    return total_waves


@lru_cache(maxsize=None)
def register_counts(n: int, G: int, kernel: str, entangler: str = "cnot") -> Optional[tuple[Counts, int, int]]:
    """Per warp and token for states spread over G lanes (32 / G states per warp), R = 2**n / G amplitudes per
    lane, with the cnot ring or rzz as the entangler. Returns (counts, registers per thread, dynamic shared bytes
    per warp), or None where no kernel for that R fits (register_regs). Counts are per lane = per
    warp-instruction (the lanes of a warp run in lockstep)."""
    N = 1 << n
    R = N // G
    if R < 1 or G > WARP:
        return None
    got = register_regs(kernel, R, G)
    if got is None:
        return None
    regs = got[0]
    K, g = int(math.log2(R)), int(math.log2(G))
    chunks, per_chunk = math.ceil(L / 2), min(L, 2)      # layers loaded in pairs (load_layers)
    owned = math.ceil(per_chunk * n / G)                 # matrices a lane builds per pair (item i % G ...)
    shfl = register_shuffles(n, G, kernel, entangler)
    rzz, P = entangler == "rzz", num_pairs(n)
    c = Counts(instructions=30)                          # token loop, offsets, length test
    # prefetch_token: the next token's angles (and, backward, feature gradients) brought to L2, the lines
    # taken by the lanes in turn (at L = 2 a token's angles span at most 3 lines): per range its address,
    # the loop test and CCTL.E.PF2
    c = c + Counts(instructions=10 * (2 if kernel == "backward" else 1) + (10 if rzz else 0))
    # load_layers: the lanes build two layers' matrices at once (+ the six trig values backward), a sync before
    # (both buffers are rewritten) and one after: per pair of layers one L2 round trip (the angles are where the
    # previous token's prefetch put them) and one trig chain
    per_owned = MAT_PREP + 8 + 6 + 4 + (6 if kernel == "backward" else 0)  # + 8 STS, loop, layer select, + 6 STS
    c = c + chunks * (Counts(instructions=owned * per_owned, fp32=owned * 13, dep_l2=1, dep_alu=TRIG_DEPTH + 2)
                      + SYNC * 2)
    if rzz:  # the rzz pairs' cos and sin the same way: an angle, half, 2 precise trig, 2 STS, loop, layer select
        c = c + chunks * Counts(instructions=math.ceil(per_chunk * P / G) * (3 + 1 + 2 * TRIG + 2 + 4 + 4),
                                fp32=math.ceil(per_chunk * P / G))
    # matrix (and trig) reads: 8 LDS.32 per gate, + 4 SEL of the lane's row on a global qubit; backward + 6 trig
    reads = 8 + (6 if kernel == "backward" else 0)
    waves = L * (K * scratch_wavefronts(G, kernel, reads) + g * scratch_wavefronts(G, kernel, reads, own_row=True))
    c = c + Counts(instructions=L * n * reads + L * g * 4, smem=L * n * reads, wavefronts=waves, dep_smem=L)
    arrays = 1 if kernel == "forward" else 2            # psi; psi and lam
    # FP32 per gate and lane. The gates are explicit fma chains (gates.h cmul_add, cmul_conj_acc,
    # undo_gate_pair_fused; before, nvcc kept cmul's FMUL + FFMA and cadd's FADD apart: 20 a pair, 64 undone):
    # a 2x2 complex on a pair is 16 instructions (8R a gate; a global gate's own row on R registers, the same);
    # backward 48 a pair (two mat-vecs 32, four conj-multiplies into the 8 sums 16): 24R. Measured in the SASS
    # (nvcc 13.0, sm_90): the fma change alone took register_forward_kernel<float, 8> by FFMA +64, FMUL -64,
    # FADD -64, its 3 local gates' 12 pairs and one global gate's 8 registers at 4 fewer each
    fp_gate = 8 * R if kernel == "forward" else 24 * R
    gates_fp = L * n * fp_gate
    extra = (L * n * ROT_GRAD) if kernel == "backward" else 0           # rot_grad_parts per gate and lane
    c = c + Counts(instructions=gates_fp + extra + L * g * 10,          # a global gate: mask, bit, loop
                   fp32=gates_fp + (L * n * 30 if kernel == "backward" else 0),  # rot_grad_parts: ~30 FP32
                   shuffles=shfl["rotations"], dep_shfl=L * g)
    c = c + Counts(instructions=shfl["rotations"])        # the SHFL themselves
    # cnot ring: local CNOTs permute registers (the permutation is materialised at the layer loop's back edge:
    # 2R moves per array when K >= 2), the (K-1, K) exchange (R SHFL per array), relabelling (a few integer
    # ops per global pair), the (n-1, 0) global-control swap (2R SEL per array)
    ring = Counts(instructions=(2 * R * arrays if K >= 2 else 0) + 5 * max(g - 1, 0) + (2 * R * arrays + 3 if g and K else 0)
                  + shfl["ring"] // L, shuffles=shfl["ring"] // L, dep_shfl=1 if shfl["ring"] else 0)
    if rzz:
        # rzz_factors: f = 1 (2R moves), per pair its cos and sin from the scratch (2 LDS, a broadcast in the
        # group), the lane's sign from its id bits (~6 integer ops) and 4 FP32 per register (FMUL + FFMA for
        # each half; the register's own sign is a constant, folded into the FFMA), the updates of one
        # register dependent pair after pair; then one complex multiply per register and array (4 FP32).
        # Backward first rzz_grad_sums: per register w = Im(conj(lam) psi) (2 FP32), the sum of all and the
        # signed sums per local qubit and local pair (1 + 2K FADD), then per pair ~3 ops from those.
        fp = P * 4 * R + arrays * 4 * R + (R * (3 + 2 * K) if kernel == "backward" else 0)
        ring = Counts(instructions=fp + 2 * R + P * 8 + (3 * P if kernel == "backward" else 0), fp32=fp, smem=2 * P,
                      wavefronts=scratch_wavefronts(G, kernel, 2 * P), dep_smem=1, dep_alu=2 * P)
    c = c + ring * L
    # float32 norm restoration once per token: squared norm in double (2 F2F + 2 DFMA per amplitude),
    # a butterfly of one double (2 SHFL + DADD a level), the factor sqrt(target / now) (NORM_SCALE), the scale
    # (2R FMUL)
    c = c + Counts(instructions=4 * R + shfl["norm"] + g + 2 * R + 2, fp32=2 * R, shuffles=shfl["norm"],
                   dep_shfl=g, dep_alu=2 * g) + NORM_SCALE
    # the per-lane sums reduced by one reduce-scatter: 3 per qubit slot (features; the backward's gradients per
    # layer, 4 with rzz: the pair's too); write_scattered's iterations: a store, then the array shifted down by one
    stride = 4 if rzz and kernel == "backward" else 3
    size = stride * qubit_slots(K)
    iters = math.ceil(stride * n / G)
    if kernel == "forward":
        # features: local qubit 12 FP32 per pair (6R), global 9 per register (9R) after its partner fetch;
        # qubit_features 5; the sums' array zeroed; a global qubit's mask, bit and partner loop 10, its 3
        # selects of the lane's own-bit sums, and its push of the earlier sums up one slot (size - 3K - 3
        # moves); one reduce-scatter (per kept value 1 SHFL + 2 SEL + 1 FADD, its g levels one after
        # another); write_scattered (per iteration the shift, a store and the slot's index, ~8)
        fp = K * 6 * R + g * 9 * R + 5 * n + shfl["reductions"]
        c = c + Counts(instructions=fp + shfl["features"] + size + g * (13 + size - 3 * K - 3)
                       + shfl["reductions"] * 3 + iters * (size + 8),
                       fp32=fp, shuffles=shfl["features"] + shfl["reductions"],
                       dep_shfl=2 * g, dep_alu=g, dep_l1=0)
    else:
        # feature sources: 3 gradient loads and M per qubit; add_twice 6 FP32, 4 per local pair (12R per qubit),
        # R per global qubit's diagonal and R more after its partner fetch (12R)
        fp = n * 12 * R
        c = c + Counts(instructions=fp + n * 16 + shfl["features"] + g * 10, fp32=fp, shuffles=shfl["features"],
                       dep_shfl=g, dep_l2=1)  # the gradients prefetched to L2 a token ahead
        # per layer: zero the gradient array, reduce-scatter (per kept value 1 SHFL + 2 SEL + 1 FADD),
        # write_layer_grads (write_scattered: per iteration the shift, a store and the slot's decode, ~12)
        per_layer = Counts(instructions=size + shfl["reductions"] // L * 4 + iters * (size + 12),
                           fp32=shfl["reductions"] // L, shuffles=shfl["reductions"] // L, dep_shfl=g, dep_alu=g)
        c = c + per_layer * L
    smem_bytes = (WARP // G) * SCRATCH_BYTES[kernel]
    return c, regs, smem_bytes


def static_code_kib(n: int, G: int, kernel: str) -> float:
    """Rough size of the token loop's code (16 bytes an instruction): the local gates and local features are
    unrolled per local qubit, the global-qubit loops are runtime loops over one body."""
    R = (1 << n) // G
    K = int(math.log2(R))
    if kernel == "forward":
        body = K * 8 * R + 10 * R + K * 6 * R + 11 * R + 12 * R + 600
    else:
        body = K * 24 * R + 28 * R + n * 12 * R + 16 * R + 3 * qubit_slots(K) * 8 + 1200
    return body * 16 / 1024


# register_program.h: the most amplitudes per lane its kernels keep in registers (kMaxForwardRegisters,
# kMaxBackwardRegisters, float32) and the host's target of warps per multiprocessor (kWarpsPerMultiprocessor)
MAX_LANE_AMPLITUDES = {"forward": 16, "backward": 16}
WARPS_PER_SM_WANTED = 4


def host_lanes(n: int, S: int, gpu: GPU, kernel: str) -> int:
    """register_program.h choose_lanes_per_state, what the register kernels run with lanes_per_state = 0: the
    fewest lanes with R <= 16, doubled while the launch gives the SMs fewer than 4 warps each; at most a warp
    and 2**n (tests/test_cost_model.py checks it against the compiled rule, qlam._C.register_lanes_per_state)."""
    N, G = 1 << n, 1
    while G < WARP and N // G > MAX_LANE_AMPLITUDES[kernel]:
        G *= 2
    while G < WARP and G < N and -(-S * G // WARP) < WARPS_PER_SM_WANTED * gpu.sms:
        G *= 2
    return min(G, N)


def register_launch(gpu: GPU, n: int, S: int, kernel: str, G: int, entangler: str = "cnot") -> dict:
    """The predicted launch of S states over G lanes each; {} where G > 2**n or its R = 2**n / G has no kernel
    that fits (register_regs) or no warp fits an SM."""
    if G > (1 << n):
        return {}
    got = register_counts(n, G, kernel, entangler)
    if got is None:
        return {}
    c, regs, smem_block = got
    resident = blocks_per_sm(gpu, 1, regs, smem_block)   # one-warp blocks (launch_groups)
    if resident < 1:
        return {}
    warps = math.ceil(S * G / WARP)
    cycles, bound, waves = launch_cycles(gpu, c, dram_bytes(n, kernel, entangler) * WARP / G, warps, 1, resident)
    return {"program": "register", "cycles": cycles, "bound": bound, "waves": waves, "counts": c,
            "states_per_warp": WARP // G, "lanes_per_state": G,
            "warps_per_sm": resident, "regs": regs, "regs_from": register_regs(kernel, (1 << n) // G, G)[1],
            "chain": chain_cycles(c), "code_kib": static_code_kib(n, G, kernel)}


def register_kernel(gpu: GPU, n: int, S: int, kernel: str, entangler: str = "cnot") -> dict:
    """The launch the host makes (host_lanes: the kernels' lanes_per_state = 0), with the best valid G beside it
    (the least predicted time over G = 1, 2, ..., 32 whose R has a kernel) as best_lanes_per_state and
    best_cycles, so the rule's cost is visible; {} where the host's G has no kernel."""
    got = register_launch(gpu, n, S, kernel, host_lanes(n, S, gpu, kernel), entangler)
    if not got:
        return {}
    best = min((b for b in (register_launch(gpu, n, S, kernel, G, entangler) for G in (1, 2, 4, 8, 16, 32)) if b),
               key=lambda b: b["cycles"])
    return {**got, "best_lanes_per_state": best["lanes_per_state"], "best_cycles": best["cycles"]}


def host_cost(gpu_name: str, kernel: str, ns=range(1, 9), states=(64, 256, 1024, 4096, 16384, 65536)) -> float:
    """The worst ratio of the host's G's predicted time to the best G's over the grid."""
    gpu = GPUS[gpu_name]
    return max(k["cycles"] / k["best_cycles"] for n in ns for S in states if (k := register_kernel(gpu, n, S, kernel)))


# ---------------------------------------------------------------- predictions

def kernel_flops(n: int, kernel: str, entangler: str = "cnot") -> int:
    return forward_flops(n, L, entangler) if kernel == "forward" else backward_flops(n, L, entangler)


def predict(design: str, gpu_name: str, n: int, S: int, pass_: str, entangler: str = "cnot") -> dict:
    """One row: the predicted fraction of FP32 peak and its breakdown (counts per state-token)."""
    gpu = GPUS[gpu_name]
    kernels = ("forward",) if pass_ == "forward" else ("forward", "backward")
    cycles, flops, parts, per_kernel = 0.0, 0, Counts(), {}
    for kernel in kernels:
        got = {}
        if design == "register":
            got = register_kernel(gpu, n, S, kernel, entangler)
            shared = shared_kernel(gpu, n, S, kernel, entangler)
            if not got or (shared and shared["cycles"] < got["cycles"]):
                got = shared  # keep the old program where it wins or the state does not fit
        else:
            got = shared_kernel(gpu, n, S, kernel, entangler)
        if not got:
            return {}
        cycles += got["cycles"]
        flops += kernel_flops(n, kernel, entangler)
        parts = parts + got["counts"] * (1 / got["states_per_warp"])
        per_kernel[kernel] = got
    seconds_per_token = cycles / (gpu.clock_ghz * 1e9)
    fraction = flops * S / seconds_per_token / (gpu.peak_gflops * 1e9)
    fwd = per_kernel["forward"]
    row = {
        "design": design, "gpu": gpu_name, "n": n, "states": S, "pass": pass_,
        "predicted_fraction_of_peak": fraction,
        "predicted_gflops": fraction * gpu.peak_gflops,
        "bound": "; ".join(f"{k}: {v['bound']}" for k, v in per_kernel.items()) if len(kernels) > 1 else fwd["bound"],
        # G per kernel ("old": the register design keeps today's program there)
        "lanes_per_state": "/".join(str(v["lanes_per_state"]) if v["program"] == design or design == "shared"
                                    else "old" for v in per_kernel.values()),
        "program": "/".join(v["program"] for v in per_kernel.values()),
        # where the registers per thread come from (ptxas_budget.json, register_program.h's comment, ...)
        "registers_from": "/".join(v.get("regs_from", "-") for v in per_kernel.values()) if design == "register"
        else "",
        "warps_per_sm": "/".join(str(v["warps_per_sm"]) for v in per_kernel.values()),
        "registers": "/".join(str(v["regs"]) for v in per_kernel.values()),
        "waves": "/".join(str(v["waves"]) for v in per_kernel.values()),
        "ns_per_state_token": seconds_per_token / S * 1e9,
        "useful_flops_per_state_token": flops,
        "instructions_per_state_token": parts.instructions,
        "fp32_instructions_per_state_token": parts.fp32,
        "smem_wavefronts_per_state_token": parts.wavefronts,
        "shuffles_per_state_token": parts.shuffles,
        "syncs_per_state_token": parts.syncs,
        "latency_chain_cycles_per_token": "/".join(f"{v['chain']:.0f}" for v in per_kernel.values()),
        "static_code_kib": "/".join(f"{v['code_kib']:.0f}" if "code_kib" in v else "" for v in per_kernel.values())
        if design == "register" else "",
    }
    return row


SMNIST_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smnist",
                             "qlam.yaml")
SMNIST_TOKENS = 784  # the task's sequence: 28 x 28 pixels, one a token


@lru_cache(maxsize=None)
def smnist_shape() -> dict:
    """The QLAM layers of configs/smnist/qlam.yaml: qubits, entangler, layers, and the states a scan runs
    (batch x heads) in training and in evaluation. Its depth must be the model's L."""
    import yaml  # only here: the rest of the model needs nothing beyond the standard library

    with open(SMNIST_CONFIG) as f:
        cfg = yaml.safe_load(f)
    model, q, train = cfg["model"], cfg["model"]["qlam"], cfg["train"]
    if q["depth"] != L:
        raise ValueError(f"{SMNIST_CONFIG}: depth {q['depth']}, but the model counts L = {L} layers per token")
    return {"n": q["n_qubits"], "entangler": q["entangler"], "tokens": SMNIST_TOKENS, "layers": model["n_layers"],
            "states": {"training": train["batch_size"] * q["n_heads"],
                       "evaluation": train["eval_batch_size"] * q["n_heads"]}}


def smnist_rows(gpu: str = "H100") -> list[dict]:
    """The sMNIST config's shape, both designs: per pass, ns per state-token, us per token (all states at once)
    and the scans' time per step (tokens x layers): training forward and forward + backward, evaluation forward."""
    shape = smnist_shape()
    rows = []
    for use, S in shape["states"].items():
        for pass_ in PASSES if use == "training" else ("forward",):
            for design in ("shared", "register"):
                r = predict(design, gpu, shape["n"], S, pass_, shape["entangler"])
                us_per_token = r["ns_per_state_token"] * S / 1e3
                rows.append({"use": use, "states": S, "pass": pass_, "design": design, "gpu": gpu,
                             "entangler": shape["entangler"], "n": shape["n"],
                             "predicted_fraction_of_peak": r["predicted_fraction_of_peak"],
                             "ns_per_state_token": r["ns_per_state_token"], "us_per_token": us_per_token,
                             "ms_per_step": us_per_token * shape["tokens"] * shape["layers"] / 1e3,
                             "lanes_per_state": r["lanes_per_state"], "bound": r["bound"],
                             "latency_chain_cycles_per_token": r["latency_chain_cycles_per_token"]})
    return rows


def all_rows() -> list[dict]:
    rows = []
    for design in ("shared", "register"):
        for gpu in GPUS:
            for n in NS:
                for S in STATES:
                    for pass_ in PASSES:
                        row = predict(design, gpu, n, S, pass_)
                        if row:
                            rows.append(row)
    return rows


# ---------------------------------------------------------------- calibration against roofline_cuda.json

def load_roofline(path: str) -> Optional[dict]:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def calibration(data: Optional[dict]) -> list[dict]:
    """The shared design on the H200 beside each measured row of roofline_cuda.json. The measured fractions
    divide by the measured matmul peak; the prediction is compared in GFLOP/s (ratio = predicted / measured)
    and its fraction restated against that same measured peak."""
    if not data:
        return []
    peak = data["meta"]["peak"]["peak_gflops"]
    out = []
    for r in data["rows"]:
        entry = {"n": r["n"], "states": r["states"]}
        for pass_, key in (("forward", "fwd"), ("forward+backward", "fwdbwd")):
            p = predict("shared", "H200", r["n"], r["states"], pass_)
            entry[f"measured_gflops_{key}"] = r[f"gflops_{key}"]
            entry[f"predicted_gflops_{key}"] = p["predicted_gflops"]
            entry[f"measured_fraction_{key}"] = r[f"fraction_of_peak_{key}"]
            entry[f"predicted_fraction_of_measured_peak_{key}"] = p["predicted_gflops"] / peak
            entry[f"ratio_{key}"] = p["predicted_gflops"] / r[f"gflops_{key}"]
            entry[f"bound_{key}"] = p["bound"]
        out.append(entry)
    return out


def fit_sync_latency(data: Optional[dict], grid=range(0, 401, 5)) -> Optional[dict]:
    """The one fitted parameter: the __syncwarp / phase-turnaround latency that best matches one lone warp's
    time per token (the S = 1 rows, forward and backward apart; least squares in log). Only reported: the
    model uses LAT["sync"], set from this fit once."""
    if not data:
        return None
    ghz = GPUS["H200"].clock_ghz
    points = []
    for r in data["rows"]:
        if r["states"] == 1:
            fwd = r["ns_per_state_token_fwd"] * ghz
            points.append((r["n"], "forward", fwd))
            points.append((r["n"], "backward", r["ns_per_state_token_fwdbwd"] * ghz - fwd))

    def log_errors(sync_cycles):
        LAT["sync"] = sync_cycles
        return [math.log(chain_cycles(shared_counts(n, k)) / cycles) for n, k, cycles in points]

    saved, best = LAT["sync"], None
    try:
        for value in grid:
            err = log_errors(value)
            rms = math.sqrt(sum(e * e for e in err) / len(err))
            if best is None or rms < best["rms_log_error"]:
                best = {"sync_cycles": value, "rms_log_error": rms}
        err = log_errors(10)
        best["ratios_with_sync_10"] = {f"{n} {k}": round(math.exp(e), 2) for (n, k, _), e in zip(points, err)}
    finally:
        LAT["sync"] = saved
    return best


def sensitivity(gpu: str = "H100", n: int = 8) -> list[tuple[str, dict]]:
    """The register design's goal point under pessimistic variants of the least certain assumptions:
    (label, {S: (forward fraction, forward+backward fraction)})."""
    global CPI_SOLO, SCHEDULERS, OVERLAP
    variants = [("as modelled", 1.0, 4, "max"), ("a lone warp at 2 cycles per instruction", 2.0, 4, "max"),
                ("half the issue rate (each instruction two slots: bank conflicts, i-cache stalls)", 1.0, 2, "max"),
                ("warps overlap each other's stalls only by chance (OVERLAP = \"chance\")", 1.0, 4, "chance"),
                ("chance overlap and half the issue rate", 1.0, 2, "chance")]
    saved = CPI_SOLO, SCHEDULERS, OVERLAP
    out = []
    try:
        for label, cpi, schedulers, overlap in variants:
            CPI_SOLO, SCHEDULERS, OVERLAP = cpi, schedulers, overlap
            out.append((label, {S: tuple(predict("register", gpu, n, S, p)["predicted_fraction_of_peak"]
                                         for p in PASSES) for S in (256, 4096, 65536)}))
    finally:
        CPI_SOLO, SCHEDULERS, OVERLAP = saved
    return out


# ---------------------------------------------------------------- report

def pct(x: float) -> str:
    digits = 1 if x >= 0.01 else 2 if x >= 0.001 else 3
    return f"{100 * x:.{digits}f}%"


def markdown(rows: list[dict], smnist: list[dict], calib: list[dict], measured_peak: Optional[float],
             fit: Optional[dict], calib_chance: Optional[list[dict]] = None) -> str:
    by = {(r["design"], r["gpu"], r["n"], r["states"], r["pass"]): r for r in rows}
    shape = smnist_shape()
    lines = [
        "# Cost model of the CUDA scan kernel: a prediction, not a measurement",
        "",
        "`python benchmarks/cost_model.py` (assumptions: its docstring and the end of this page). L = 2, cnot "
        "ring, float32, H = 1, no pair features; fraction of the FP32 peak at the boost clock (SMs x FP32 lanes "
        "x 2 x clock), useful flops from benchmarks/flops.py. `shared` = today's kernel (one warp per state, "
        "state in shared memory); `register` = issue 15's design (each state over G lanes, amplitudes in "
        "registers, as built in csrc/register_program.h, recalibrated 2026-11-26 with ptxas's register counts and the "
        "program's own shuffles; G = the host's choice per point (register_program.h choose_lanes_per_state), "
        "forward/backward; \"old\" where today's program wins or no R = 2^n/G has a kernel). Bound: what limits the busiest wave (issue, fp32, mio = shared memory + shuffles, "
        "dram, latency = one warp's dependent chain).",
        "",
        "## The goal of issue 15: n = 8, S >= 4096: >= 30 % forward, >= 20 % forward+backward",
        "",
        "| GPU | S | shared fwd | register fwd (G, bound) | shared fwd+bwd | register fwd+bwd (G fwd/bwd, bound) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    for gpu in GPUS:
        for S in STATES:
            if S < 4096:
                continue
            sf, rf = by[("shared", gpu, 8, S, "forward")], by[("register", gpu, 8, S, "forward")]
            sb, rb = by[("shared", gpu, 8, S, "forward+backward")], by[("register", gpu, 8, S, "forward+backward")]
            lines.append(f"| {gpu} | {S} | {pct(sf['predicted_fraction_of_peak'])} ({sf['bound']}) "
                         f"| {pct(rf['predicted_fraction_of_peak'])} ({rf['lanes_per_state']}, {rf['bound']}) "
                         f"| {pct(sb['predicted_fraction_of_peak'])} "
                         f"| {pct(rb['predicted_fraction_of_peak'])} ({rb['lanes_per_state']}; {rb['bound']}) |")
    lines += ["", "Sensitivity of the register design at n = 8 on the H100 (forward / forward+backward):", ""]
    for label, by_s in sensitivity():
        lines.append(f"- {label}: " + "; ".join(f"S = {S}: {pct(f)} / {pct(fb)}" for S, (f, fb) in by_s.items()))
    lines += ["", "At S = 256 (batch 64 x 4 heads) the GPU is not full even at G = 32 (256 warps, two per SM): "
              "one warp's dependent chain sets the time; filling the GPU there would take more than a warp per state.",
              "", "The host's choice of G (register_program.h choose_lanes_per_state: the fewest lanes with R <= 16, "
              "then doubled while the SMs would get fewer than 4 warps each) against the best G the model finds, "
              "over n = 1..8 and S = 64..65,536: at most "
              + ", ".join(f"{g} {k} {host_cost(g, k):.2f}x" for g in ("A100", "H100") for k in ("forward", "backward"))
              + " slower.",
              "", f"## The sMNIST config's shape (configs/smnist/qlam.yaml: n = {shape['n']}, L = {L}, "
              f"{shape['entangler']}; H100)", "",
              f"The scans of one step: {shape['tokens']} tokens through {shape['layers']} QLAM layers, the states "
              "(batch x heads) in parallel. "
              "A training step runs forward + backward, an evaluation batch the forward. Predicted, not measured; "
              "the rest of the model (projections, feed-forward, optimizer) is not included.", "",
              "| use | states | pass | shared: ns/state-token (bound) | register: ns/state-token (G, bound) "
              "| shared: ms/step | register: ms/step | speed-up |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for sh, rg in zip(smnist[0::2], smnist[1::2]):
        lines.append(f"| {sh['use']} | {sh['states']} | {sh['pass']} | {sh['ns_per_state_token']:.1f} ({sh['bound']}) "
                     f"| {rg['ns_per_state_token']:.1f} ({rg['lanes_per_state']}, {rg['bound']}) "
                     f"| {sh['ms_per_step']:.1f} | {rg['ms_per_step']:.1f} "
                     f"| {sh['ms_per_step'] / rg['ms_per_step']:.1f}x |")
    lines += ["", "## The register design at n = 8, per G (H100, S = 4096; per warp and token, 32/G states a warp)", "",
              "| kernel | G | R | registers (from) | warps/SM | SHFL/lane (rot, ring, feat, red, norm) "
              "| instructions | FP32 | lone-warp chain (cycles) | fraction of peak at this G |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kernel in ("forward", "backward"):
        for G in (2, 4, 8, 16, 32):
            R = 256 // G
            got = register_counts(8, G, kernel)
            sh = register_shuffles(8, G, kernel)
            if got is None:
                lines.append(f"| {kernel} | {G} | {R} | no kernel (R = {R} spills or is not built) | | "
                             f"{sum(sh.values())} | | | | |")
                continue
            c, regs, smem_block = got
            w = blocks_per_sm(GPUS["H100"], 1, regs, smem_block)
            cyc, _, _ = launch_cycles(GPUS["H100"], c, dram_bytes(8, kernel) * WARP / G, 4096 * G // WARP, 1, w)
            frac = kernel_flops(8, kernel) * 4096 / (cyc / (GPUS["H100"].clock_ghz * 1e9)) / (GPUS["H100"].peak_gflops * 1e9)
            lines.append(f"| {kernel} | {G} | {R} | {regs} ({register_regs(kernel, R, G)[1]}) | {w} "
                         f"| {sum(sh.values())} ({', '.join(str(v) for v in sh.values())}) | {c.instructions:.0f} "
                         f"| {c.fp32:.0f} | {chain_cycles(c):.0f} | {pct(frac)} |")
    for pass_ in PASSES:
        lines += ["", f"## H100, {pass_}: shared -> register (G)", "",
                  "| n | " + " | ".join(f"S = {S}" for S in STATES) + " |",
                  "| --- |" + " --- |" * len(STATES)]
        for n in NS:
            cells = []
            for S in STATES:
                s_, r_ = by[("shared", "H100", n, S, pass_)], by[("register", "H100", n, S, pass_)]
                g = r_["lanes_per_state"]
                cells.append(f"{pct(s_['predicted_fraction_of_peak'])} -> "
                             f"{pct(r_['predicted_fraction_of_peak'])} ({g})")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "A100 and H200: benchmarks/results/cost_model.json (same keys).", ""]

    c8 = {k: shared_counts(8, k) for k in ("forward", "backward")}
    mio8 = {k: c.wavefronts + c.shuffles for k, c in c8.items()}  # an H100 SM: 256 flops a cycle at peak
    ceiling_f = forward_flops(8, L) / (mio8["forward"] * 256)
    ceiling_fb = (forward_flops(8, L) + backward_flops(8, L)) / ((mio8["forward"] + mio8["backward"]) * 256)
    lines += [
        "## Today's kernel per state-token at n = 8 (from the loop structure; wavefronts simulated)",
        "",
        "| kernel | warp-instructions | FP32 | LDS/STS | wavefronts | shuffles | syncs | lone warp (cycles) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, c in c8.items():
        lines.append(f"| {k} | {c.instructions:.0f} | {c.fp32:.0f} | {c.smem:.0f} | {c.wavefronts:.0f} "
                     f"| {c.shuffles:.0f} | {c.syncs:.0f} | {chain_cycles(c):.0f} |")
    lines += [
        "",
        "Simulated bank conflicts (float32, re and im as separate 32-bit accesses): the 1q gate loop is 4-way "
        "on qubits 0-3 and 2-way above (8-byte amplitudes use only the even or the odd banks); CNOT pairs "
        "(0,1), (1,2), (2,3) 8-way, (3,4) and the closing (n-1,0) 4-way, the others 2-way; the matrix reads "
        "are broadcasts (1 wavefront). Issue 15's 3,776 wavefronts forward are reproduced exactly; its 6,784 "
        "backward is 128 short of the simulation's 6,912: the 8 broadcast reads of the gate matrix (md) per "
        "backward gate x 16 gates. With the shuffles, which share the shared-memory crossbar, the ceilings are "
        f"{pct(ceiling_f)} forward and {pct(ceiling_fb)} forward+backward of an H100's peak (issue 15: 7.6 % "
        "and 10.6 %, wavefronts alone).",
        "",
    ]
    if calib:
        ratios = [e[f"ratio_{k}"] for e in calib for k in ("fwd", "fwdbwd")]
        lines += [
            "## Calibration: `shared` on the H200 against benchmarks/results/roofline_cuda.json",
            "",
            f"The measured fractions divide by the measured float32 matmul peak ({measured_peak:.0f} GFLOP/s, "
            f"{100 * measured_peak / GPUS['H200'].peak_gflops:.0f} % of the {GPUS['H200'].peak_gflops:.0f} "
            "GFLOP/s spec peak at 1.98 GHz); the predicted columns restate the prediction against that same "
            "measured peak (x spec / measured). ratio = predicted GFLOP/s / measured GFLOP/s (> 1: the model is "
            f"optimistic). Median ratio {sorted(ratios)[len(ratios) // 2]:.2f}, range {min(ratios):.2f}-"
            f"{max(ratios):.2f} over {len(ratios)} points.",
            "",
            "| n | S | fwd measured | fwd predicted | ratio | bound "
            "| fwd+bwd measured | fwd+bwd predicted | ratio | bound |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for e in calib:
            lines.append(
                f"| {e['n']} | {e['states']} | {pct(e['measured_fraction_fwd'])} "
                f"| {pct(e['predicted_fraction_of_measured_peak_fwd'])} | {e['ratio_fwd']:.2f} | {e['bound_fwd']} "
                f"| {pct(e['measured_fraction_fwdbwd'])} | {pct(e['predicted_fraction_of_measured_peak_fwdbwd'])} "
                f"| {e['ratio_fwdbwd']:.2f} | {e['bound_fwdbwd']} |")
        lines += [
            "",
            "Where the model is off: near a crossover (n = 8 at S <= 1024, 8 warps per SM: throughput and one "
            "warp's chain about equal) and at n = 4-6 with many states (issue, shared memory and latency all "
            "close) the real time exceeds the max of the bounds: ratios up to 1.4 and 1.8. One parameter was "
            "fitted (below); no per-row factors.",
            "",
        ]
        if calib_chance:
            rc = [e[f"ratio_{k}"] for e in calib_chance for k in ("fwd", "fwdbwd")]
            lines += [
                "With OVERLAP = \"chance\" (a warp's stalls hidden by the others only by chance; the register "
                f"design's sensitivity row) the same points give median ratio {sorted(rc)[len(rc) // 2]:.2f}, range "
                f"{min(rc):.2f}-{max(rc):.2f}: closer to the measurements at every crossover, still optimistic. The "
                "register design at n = 8, S >= 4096 sits at such a crossover (G = 16: 8 warps per SM, issue and "
                "one warp's chain within ~10 %), so its \"as modelled\" figure is the optimistic end.",
                "",
            ]
    lines += [
        "## Assumptions",
        "",
        "- Per SM holding w warps, cycles per token = max(issue: ceil(w/4) x instructions; FP32 pipe; "
        "w x (wavefronts + SHFL), one a cycle per SM; DRAM: angles and features; one warp's dependent chain). "
        "The max gives full overlap: optimistic where two bounds are close.",
        f"- Latencies (cycles): {', '.join(f'{k} {v}' for k, v in LAT.items())}; a lone warp issues one "
        "instruction a cycle and its own wavefronts and shuffles pass the pipe one a cycle. "
        + (f"The sync latency is fitted: the S = 1 rows (one warp alone) want {fit['sync_cycles']} cycles per "
           f"phase (rms log error {fit['rms_log_error']:.2f}); a __syncwarp alone should take ~10-20, and with 10 "
           f"the lone-warp times come out {min(fit['ratios_with_sync_10'].values()):.2f}-"
           f"{max(fit['ratios_with_sync_10'].values()):.2f} of the measured ones. What the remaining ~150 cycles "
           "per phase are (loop entry and exit of the int64 pair loops, reconvergence, a fence in __syncwarp) "
           "the counted instructions do not say; Nsight Compute's stall reasons at S = 1 would. "
           if fit else "")
        + "The allreduce's shuffles wait for each other (value by value, in-order issue): the backward's "
        "lone-warp time needs it.",
        "- Today's kernel: 72/80 registers (fwd/bwd), <= 8 warps a block (48 KiB), 24 warps per SM at most; 45.5 "
        "instructions per pair in the forward gate loop (SASS, issue 15), 13.5 of them index/loop overhead, "
        "charged to every pair loop.",
        "- Register design as built (recalibrated 2026-11-26; the docstring has the details): registers per "
        "thread from tests/cuda/ptxas_budget.json at run time (forward "
        + "/".join(str(ptxas_budget()[f"register_forward_kernel<float, {R}>"]["registers"]) for R in (1, 2, 4, 8, 16))
        + " at R = 1/2/4/8/16, backward "
        + "/".join(str(ptxas_budget()[f"register_backward_kernel<float, {R}>"]["registers"]) for R in (1, 2, 4, 8, 16))
        + "); one-warp blocks, <= 32 per SM; no kernel for R >= 32, so n >= 10 keeps today's "
        "program. SHFL per lane as the program does them (a global gate fetches the partner's R amplitudes; the "
        "forward's features by one reduce-scatter per token; the backward's gradients by one per layer), equal "
        "to the counts of the CPU emulation's lanes (tests/test_cost_model.py: n = 4, 6, 8, every G). FP32 per pair and gate 16 forward, 48 "
        "backward (explicit fma chains, as the SASS shows; 20 / 64 while nvcc kept cmul and cadd apart). G: the host's choice (at n = 8 and "
        "S >= 4096 G = 16, also the model's best).",
        "- Superseded (the first version's 79 % / 82 % at n = 8, S = 4,096, H100): 2A+40 / 4A+40 registers "
        "(A = 2^n/G), about half of ptxas's counts at A >= 8; measurements reduced by reduce-scatter; a qubit "
        "remap per layer instead of per-gate partner shuffles; 16 / 48 FP32 per pair and gate; angles "
        "prefetched.",
        "- Not modelled, all making the register design's numbers an upper bound: instruction-cache misses of "
        "the unrolled code (the executed path per token, `static_code_kib`, is tens of KiB at n = 8; the SASS of "
        "register_forward_kernel<float, 16> was 251 KiB and of the backward's 613 KiB before the fused gates, "
        "with every entangler and "
        "pair-feature path), register-bank "
        "conflicts and dual-issue limits, a lone warp's FMA stalls (it is counted at one instruction a cycle).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.parse_args(argv)
    from timing import write_results  # imports torch: kept out of the model, which the tests import

    data = load_roofline(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "roofline_cuda.json"))
    rows = all_rows()
    smnist = smnist_rows()
    calib = calibration(data)
    global OVERLAP
    OVERLAP = "chance"
    try:
        calib_chance = calibration(data)
    finally:
        OVERLAP = "max"
    fit = fit_sync_latency(data)
    measured_peak = data["meta"]["peak"]["peak_gflops"] if data else None
    meta = {
        "L": L, "H": 1, "entangler": "cnot", "dtype": "float32", "pair_features": False,
        "gpus": {k: {**vars(g), "peak_gflops": g.peak_gflops} for k, g in GPUS.items()},
        "latencies_cycles": LAT, "cpi_solo": CPI_SOLO, "shared_registers": SHARED_REGS,
        "register_registers": {k: {R: register_regs(k, R) for R in (1, 2, 4, 8, 16, 32)}
                               for k in ("forward", "backward")},
        "register_warp_registers": {k: {R: register_regs(k, R, WARP) for R in (1, 2, 4, 8, 16, 32)}
                                    for k in ("forward", "backward")},
        "ptxas_budget": os.path.relpath(PTXAS_BUDGET, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "recalibrated": "2026-11-26: registers from ptxas, shuffles as the program does them (butterflies in the "
                        "forward's features), FP32 per gate from the SASS's cmul/cadd; was 2R+40 registers, "
                        "reduce-scatter, qubit remaps",
        "sync_latency_fit": fit,
        "counts": "per state-token; a warp's work divided among its 32/G states; fwd+bwd rows sum both kernels; "
                  "'a/b' fields give the forward and the backward kernel",
        "measured_matmul_peak_gflops_h200": measured_peak, "calibration_h200": calib,
        "smnist_config_shape": smnist,
        "command": "python benchmarks/cost_model.py",
    }
    md = markdown(rows, smnist, calib, measured_peak, fit, calib_chance)
    paths = write_results("cost_model", rows, md, meta)
    print(md)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
