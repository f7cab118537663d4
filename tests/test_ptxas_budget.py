"""Issue 15's build check: the CUDA kernels' registers, spills and stack (local memory), as ptxas
reports them for sm_90, stay within tests/cuda/ptxas_budget.json. Runs wherever nvcc exists (the
CI machine has the CUDA toolkit and no GPU): it compiles csrc/cuda/scan_cuda.cu (today's kernels)
and csrc/cuda/register_cuda.cu (the register program's kernels, one per register count) to cubins."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUDGET = json.loads((ROOT / "tests" / "cuda" / "ptxas_budget.json").read_text())


def find_nvcc():
    for candidate in (os.environ.get("QLAM_NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


NVCC = find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)")

TYPES = {"f": "float", "d": "double"}


def kernel_name(mangled: str) -> str:
    """'_ZN4qlam..20scan_backward_kernelIfEEv..' -> 'scan_backward_kernel<float>';
    '..23register_forward_kernelIfLi16EEEv..' -> 'register_forward_kernel<float, 16>'."""
    m = re.search(r"\d+((?:scan|register)_\w+?_kernel)I([fd])(?:Li(\d+)E)?E", mangled)
    assert m, f"unrecognised kernel symbol {mangled}"
    args = [TYPES[m.group(2)]] + ([m.group(3)] if m.group(3) else [])
    return f"{m.group(1)}<{', '.join(args)}>"


def resource_usage(source: Path, extra_args) -> dict:
    """kernel -> {registers, spill_bytes, stack_bytes} from `nvcc -cubin --resource-usage`."""
    out = subprocess.run([NVCC, "-std=c++17", f"-arch=sm_{BUDGET['sm']}", "-cubin", "-o", os.devnull,
                          "--resource-usage", *extra_args, str(source)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"nvcc failed on {source}:\n{out.stderr[-4000:]}"
    usage, current = {}, None
    for line in (out.stdout + out.stderr).splitlines():
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
    from torch.utils.cpp_extension import include_paths
    torch_includes = [f"-I{p}" for p in include_paths("cuda")]
    cuda_include = str(Path(NVCC).resolve().parents[1] / "include")
    found = {}
    for source in ("scan_cuda.cu", "register_cuda.cu"):
        found.update(resource_usage(ROOT / "csrc" / "cuda" / source,
                                    [*torch_includes, f"-I{cuda_include}", "-DQLAM_WITH_CUDA=1"]))
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
