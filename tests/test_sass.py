"""Issue 15's SASS check: what the CUDA kernels' machine code (sm_90, `cuobjdump -sass` of the cubins
tests/cuda_build.py compiles, the same ones tests/test_ptxas_budget.py reads ptxas's report from) does
that the designs rely on. Runs wherever nvcc and a cuobjdump exist (no GPU needed; torch's Triton
ships a cuobjdump when the toolkit lacks one).

Per kernel, instruction counts stay within tests/cuda/sass_budget.json (maxima: shared loads and
stores by width, local loads and stores, shuffles, warp syncs, block barriers, and the gate loop's
re-reads of loop-invariant shared words); an improvement passes, a regression fails. And, for the
register program (csrc/register_program.h, csrc/cuda/register_cuda.cu), every instantiation:
  - the amplitudes stay in registers: its only local-memory instructions (LDL/STL) are the
    sinf/cosf/sin/cos range reduction's (its slow path for huge angles keeps a 28- or 40-byte array
    on the stack: ptxas's 32 / 40 stack bytes), so their count is the same for every amplitude count R;
  - the lanes exchange amplitudes by xor-shuffles (SHFL.BFLY) only, and do.

`python tests/test_sass.py` prints the measured counts in sass_budget.json's form."""
import collections
import json
import re
import sys
from dataclasses import dataclass

import pytest

from cuda_build import CUDA_SOURCES, NVCC, ROOT, find_cuobjdump, kernel_name, sass

BUDGET = json.loads((ROOT / "tests" / "cuda" / "sass_budget.json").read_text())
CUOBJDUMP = find_cuobjdump()
pytestmark = [pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)"),
              pytest.mark.skipif(CUOBJDUMP is None, reason="needs cuobjdump (the CUDA toolkit's, on PATH or in "
                                 "$CUDA_HOME/bin, or Triton's in triton/backends/nvidia/bin)")]


@dataclass(frozen=True)
class Instr:
    addr: int
    op: str        # with modifiers: 'LDS.128', 'SHFL.BFLY'
    operands: str  # as printed, without the predicate guard

    @property
    def base(self) -> str:
        return self.op.split(".")[0]


LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\s*([^;]*);")


def parse_sass(text: str) -> dict:
    """kernel -> its instructions, in address order."""
    kernels, current = {}, None
    for line in text.splitlines():
        if m := re.search(r"Function : (\S+)", line):
            current = kernels.setdefault(kernel_name(m.group(1)), [])
        elif current is not None and (m := LINE.search(line)):
            current.append(Instr(int(m.group(1), 16), m.group(2), m.group(3).strip()))
    return kernels


def width(op: str) -> int:
    """Bits moved by a load or store: LDS -> 32, LDS.64 -> 64, LDS.U8 -> 8."""
    for bits in ("128", "64", "16", "8"):
        if re.search(rf"\.[US]?{bits}(\.|$)", op):
            return int(bits)
    return 32


def innermost_loops(ins: list) -> list:
    """(first, last) instruction indices of each loop (a backward branch and its target) that holds
    no other loop."""
    index = {i.addr: k for k, i in enumerate(ins)}
    loops = []
    for k, i in enumerate(ins):
        if i.base == "BRA" and (m := re.search(r"(0x[0-9a-f]+)\s*$", i.operands)):
            target = int(m.group(1), 16)
            if target <= i.addr and target in index:
                loops.append((index[target], k))
    return [(s, e) for s, e in loops
            if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]


def shared_base(operands: str) -> str:
    m = re.search(r"\[(U?R\d+|U?RZ)", operands)
    return m.group(1) if m else "?"


def written_registers(i: Instr) -> set:
    """The (uniform) registers an instruction writes: its first register operand, as wide as its result."""
    tokens = [t.strip() for t in i.operands.split(",")][:2]
    first = next((t for t in tokens if re.fullmatch(r"U?R\d+", t)), None)
    if first is None or tokens[0] != first and not re.fullmatch(r"U?P(T|\d)", tokens[0]):
        return set()
    n = 4 if ".128" in i.op else 2 if (".64" in i.op or ".WIDE" in i.op or "F64" in i.op or i.op[0] == "D") else 1
    prefix, number = re.fullmatch(r"(U?R)(\d+)", first).groups()
    return {f"{prefix}{int(number) + k}" for k in range(n)}


def gate_loop_invariant_lds(ins: list) -> int:
    """The most shared loads from a loop-invariant address (base register not written in the loop), over
    the innermost loops that store to shared memory: the same words read again on every trip, as a gate
    matrix is when the compiler cannot keep it in registers across the amplitude stores (they might
    alias it). Loads of the amplitudes themselves (addresses that move) do not count."""
    most = 0
    for s, e in innermost_loops(ins):
        body = ins[s:e + 1]
        if not any(i.base == "STS" for i in body):
            continue
        written = set().union(*(written_registers(i) for i in body))
        most = max(most, sum(1 for i in body if i.base == "LDS" and shared_base(i.operands) not in written))
    return most


def counts(ins: list) -> dict:
    c = collections.Counter()
    for key in ("LDS.32", "LDS.64", "LDS.128", "STS.32", "STS.64", "STS.128"):
        c[key] = 0
    for i in ins:
        if i.base in ("LDS", "STS"):
            c[f"{i.base}.{width(i.op)}"] += 1
        elif i.base in ("LDL", "STL", "SHFL", "BAR", "WARPSYNC"):
            c[i.base] += 1
    for key in ("LDL", "STL", "SHFL", "BAR", "WARPSYNC"):
        c[key] += 0
    c["gate_loop_invariant_lds"] = gate_loop_invariant_lds(ins)
    return dict(c)


def info(ins: list) -> dict:
    """Not budgeted, printed: the FP multiply-add share and the load/store forms."""
    ops = collections.Counter(i.base for i in ins)
    fp = sum(ops[o] for o in ("FFMA", "FMUL", "FADD", "DFMA", "DMUL", "DADD"))
    return {"instructions": len(ins), "FFMA": ops["FFMA"], "DFMA": ops["DFMA"],
            "fma_share_of_fp": round((ops["FFMA"] + ops["DFMA"]) / fp, 3) if fp else None,
            "SHFL forms": sorted({i.op for i in ins if i.base == "SHFL"}),
            "local forms": sorted({i.op for i in ins if i.base in ("LDL", "STL")})}


@pytest.fixture(scope="module")
def kernels() -> dict:
    found = {}
    for source in CUDA_SOURCES:
        found.update(parse_sass(sass(source, BUDGET["sm"], CUOBJDUMP)))
    for name, ins in sorted(found.items()):
        print(f"{name}: {counts(ins)} {info(ins)}")
    return found


def register_kernels():
    return sorted(k for k in BUDGET["kernels"] if k.startswith("register_"))


def within(key: str, got: int, budget: int) -> bool:
    if key in BUDGET["headroom_keys"] and budget > 0:
        budget = int(budget * (1 + BUDGET["headroom_percent"] / 100))
    return got <= budget


@pytest.mark.parametrize("kernel", sorted(BUDGET["kernels"]))
def test_kernel_within_its_sass_budget(kernel, kernels):
    assert kernel in kernels, f"{kernel} was not compiled (renamed or removed?); kernels found: {sorted(kernels)}"
    got, budget = counts(kernels[kernel]), BUDGET["kernels"][kernel]
    over = {key: (got[key], limit) for key, limit in budget.items() if not within(key, got[key], limit)}
    assert not over, (f"{kernel}: over its budget, (count, budget): {over}; all counts: {got} (tests/cuda/sass_budget.json, "
                      f"+{BUDGET['headroom_percent']} % allowed on non-zero {BUDGET['headroom_keys']})")


def test_every_compiled_kernel_has_a_sass_budget(kernels):
    assert set(kernels) <= set(BUDGET["kernels"]), (
        f"kernels without a budget: {sorted(set(kernels) - set(BUDGET['kernels']))}")


TRIG_TABLE_WINDOW = 48  # instructions: the range reduction's local stores and loads follow its table read


@pytest.mark.parametrize("kernel", register_kernels())
def test_register_kernel_uses_local_memory_only_in_trig_range_reduction(kernel, kernels):
    """Every LDL/STL follows, within TRIG_TABLE_WINDOW instructions, a 32- or 64-bit read-only global load
    (LDG.*.CONSTANT: the range reduction's table of 2/pi's bits, __cudart_i2opi_f / _d), as in the
    scan kernels' forward (measured: at most 31 instructions after it). An amplitude array that went to
    local memory (a runtime register index, a spill) puts LDL/STL elsewhere."""
    ins = kernels[kernel]
    stray = []
    for k, i in enumerate(ins):
        if i.base in ("LDL", "STL"):
            window = ins[max(0, k - TRIG_TABLE_WINDOW):k]
            if not any(w.base == "LDG" and "CONSTANT" in w.op and width(w.op) <= 64 for w in window):
                stray.append(f"/*{i.addr:04x}*/ {i.op} {i.operands}")
    assert not stray, f"{kernel}: local-memory instructions outside the trig range reduction: {stray[:20]}"


def test_register_kernels_local_memory_does_not_grow_with_amplitudes_per_lane(kernels):
    """LDL and STL counts are the same for every R of one kernel and dtype: local memory that held
    amplitudes would grow with R."""
    groups = collections.defaultdict(dict)
    for kernel in register_kernels():
        m = re.fullmatch(r"(\w+)<(\w+), (\d+)>", kernel)
        c = counts(kernels[kernel])
        groups[(m.group(1), m.group(2))][int(m.group(3))] = (c["LDL"], c["STL"])
    for (name, dtype), by_r in sorted(groups.items()):
        assert len(set(by_r.values())) == 1, f"{name}<{dtype}>: (LDL, STL) by R differ: {by_r}"


@pytest.mark.parametrize("kernel", register_kernels())
def test_register_kernel_exchanges_by_xor_shuffles(kernel, kernels):
    """The design moves amplitudes between lanes with __shfl_xor_sync only (one uniform mask per global
    qubit; no lane-permutation table, no SHFL.IDX)."""
    shfl = collections.Counter(i.op for i in kernels[kernel] if i.base == "SHFL")
    assert shfl, f"{kernel}: no SHFL instructions"
    assert set(shfl) == {"SHFL.BFLY"}, f"{kernel}: shuffles other than SHFL.BFLY: {dict(shfl)}"


CONVERGENCE_CHECK = ("MATCH", "REDUX", "VOTEU")


@pytest.mark.parametrize("kernel", [k for k in register_kernels() if "_warp_kernel" in k])
def test_whole_warp_kernels_skip_the_convergence_check(kernel, kernels):
    """The G = 32 kernels sync and shuffle with the warp's constant mask, so ptxas puts no convergence check
    (MATCH.ANY of the mask, REDUX.OR, VOTEU.ANY, then a BRA.DIV) before their syncs and shuffle groups; the
    group kernels, whose mask is a per-thread value, carry one before each (the reason for the variant)."""
    warp = collections.Counter(i.base for i in kernels[kernel])
    group = collections.Counter(i.base for i in kernels[kernel.replace("_warp_kernel", "_kernel")])
    assert all(warp[op] == 0 for op in CONVERGENCE_CHECK), f"{kernel}: {[(op, warp[op]) for op in CONVERGENCE_CHECK]}"
    assert all(group[op] > 0 for op in CONVERGENCE_CHECK), "the group kernel lost its checks: the variant may go"
    assert warp["SHFL"] >= group["SHFL"] - 4 and warp["SHFL"] > 0  # the same exchanges (the checks' fallbacks aside)


def main():
    """Prints the measured counts (for sass_budget.json's "kernels")."""
    cuobjdump = CUOBJDUMP or sys.exit("no cuobjdump found")
    found = {}
    for source in CUDA_SOURCES:
        found.update(parse_sass(sass(source, BUDGET["sm"], cuobjdump)))
    print(json.dumps({k: counts(v) for k, v in sorted(found.items())}, indent=2))


if __name__ == "__main__":
    main()
