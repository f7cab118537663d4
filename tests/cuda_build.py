"""Issue 15's build checks' shared part: finds nvcc (and cuobjdump) and compiles qlam's CUDA sources
(csrc/cuda/*.cu) to cubins, once per source and architecture per test session, for
tests/test_ptxas_budget.py (ptxas's resource usage) and tests/test_sass.py (the cubin's SASS).
Needs no GPU: only the CUDA toolkit's nvcc and torch's headers."""
import atexit
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCES = ("scan_cuda.cu", "register_cuda.cu")  # under csrc/cuda


def find_nvcc():
    for candidate in (os.environ.get("QLAM_NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


NVCC = find_nvcc()


def find_cuobjdump():
    """$QLAM_CUOBJDUMP, cuobjdump on PATH, in $CUDA_HOME/bin or beside nvcc, else the one Triton bundles
    (triton/backends/nvidia/bin; torch installs Triton on Linux x86-64). Triton is located, not imported."""
    candidates = [os.environ.get("QLAM_CUOBJDUMP"), shutil.which("cuobjdump")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home:
            candidates.append(str(Path(home) / "bin" / "cuobjdump"))
    if NVCC:
        candidates.append(str(Path(NVCC).resolve().parent / "cuobjdump"))
    try:
        spec = importlib.util.find_spec("triton")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(str(Path(location) / "backends" / "nvidia" / "bin" / "cuobjdump"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


TYPES = {"f": "float", "d": "double"}


def kernel_name(mangled: str) -> str:
    """'_ZN4qlam..20scan_backward_kernelIfEEv..' -> 'scan_backward_kernel<float>';
    '..23register_forward_kernelIfLi16EEEv..' -> 'register_forward_kernel<float, 16>' (and
    register_backward_kernel alike)."""
    m = re.search(r"\d+((?:scan|register)_\w+?_kernel)I([fd])(?:Li(\d+)E)?E", mangled)
    assert m, f"unrecognised kernel symbol {mangled}"
    args = [TYPES[m.group(2)]] + ([m.group(3)] if m.group(3) else [])
    return f"{m.group(1)}<{', '.join(args)}>"


@dataclass(frozen=True)
class Cubin:
    path: Path  # the cubin, in a folder removed when the test session's process exits
    log: str    # nvcc's stdout and stderr (with --resource-usage: ptxas's report per kernel)


@functools.lru_cache(maxsize=None)
def _cubin_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="qlam-cubins-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def compile_cubin(source: str, sm: str) -> Cubin:
    """csrc/cuda/<source> -> an sm_<sm> cubin, with ptxas's resource usage in its log. Compiled once per
    (source, sm) in a process, whichever test asks first (register_cuda.cu takes minutes)."""
    assert NVCC, "needs nvcc (the CUDA toolkit)"
    from torch.utils.cpp_extension import include_paths
    torch_includes = [f"-I{p}" for p in include_paths("cuda")]
    cuda_include = str(Path(NVCC).resolve().parents[1] / "include")
    src = ROOT / "csrc" / "cuda" / source
    out_path = _cubin_dir() / f"{Path(source).stem}.sm_{sm}.cubin"
    out = subprocess.run([NVCC, "-std=c++17", f"-arch=sm_{sm}", "-cubin", "-o", str(out_path),
                          "--resource-usage", *torch_includes, f"-I{cuda_include}", "-DQLAM_WITH_CUDA=1",
                          str(src)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"nvcc failed on {src}:\n{out.stderr[-4000:]}"
    return Cubin(out_path, out.stdout + out.stderr)


@functools.lru_cache(maxsize=None)
def sass(source: str, sm: str, cuobjdump: str) -> str:
    """`cuobjdump -sass` of compile_cubin(source, sm)."""
    out = subprocess.run([cuobjdump, "-sass", str(compile_cubin(source, sm).path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cuobjdump} -sass failed on {source}:\n{out.stderr[-4000:]}"
    return out.stdout
