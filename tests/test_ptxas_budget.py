"""Issue 15's build check: the CUDA kernels' registers, spills and stack (local memory), as ptxas
reports them for sm_90, stay within tests/cuda/ptxas_budget.json. Runs wherever nvcc exists (the
CI machine has the CUDA toolkit and no GPU): it compiles csrc/cuda/scan_cuda.cu (today's kernels)
and csrc/cuda/register_cuda.cu (the register program's forward and backward kernels, one per register
count) to cubins. The register kernels' largest register counts sit at ptxas's 255 with no spills:
a spill there means register_program.h's kMaxForwardRegisters / kMaxBackwardRegisters must come down."""
import json
import re

import pytest

from cuda_build import CUDA_SOURCES, NVCC, ROOT, compile_cubin, kernel_name

BUDGET = json.loads((ROOT / "tests" / "cuda" / "ptxas_budget.json").read_text())
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)")


def resource_usage(source: str) -> dict:
    """kernel -> {registers, spill_bytes, stack_bytes} from `nvcc -cubin --resource-usage` (tests/cuda_build.py,
    whose cubins tests/test_sass.py disassembles)."""
    usage, current = {}, None
    for line in compile_cubin(source, BUDGET["sm"]).log.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            current = kernel_name(m.group(1))
            usage[current] = {}
        elif current and (m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                                           line)):
            usage[current].update(stack_bytes=int(m.group(1)), spill_bytes=int(m.group(2)) + int(m.group(3)))
        elif current and (m := re.search(r"Used (\d+) registers", line)):
            usage[current]["registers"] = int(m.group(1))
            current = None
    return usage


@pytest.fixture(scope="module")
def usage():
    found = {}
    for source in CUDA_SOURCES:
        found.update(resource_usage(source))
    print("\n".join(f"{k}: {v}" for k, v in sorted(found.items())))
    return found


@pytest.mark.parametrize("kernel", sorted(BUDGET["kernels"]))
def test_kernel_within_its_ptxas_budget(kernel, usage):
    assert kernel in usage, f"{kernel} was not compiled (renamed or removed?); kernels found: {sorted(usage)}"
    got, budget = usage[kernel], BUDGET["kernels"][kernel]
    for key in ("registers", "spill_bytes", "stack_bytes"):
        assert got[key] <= budget[key], (f"{kernel}: {key} = {got[key]} exceeds its budget {budget[key]} "
                                         f"(tests/cuda/ptxas_budget.json); all: {got}")


def test_every_compiled_kernel_has_a_budget(usage):
    assert set(usage) <= set(BUDGET["kernels"]), f"kernels without a budget: {sorted(set(usage) - set(BUDGET['kernels']))}"
