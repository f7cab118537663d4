"""The CPU kernels' plain loops that are meant to run across SIMD lanes do, in the AVX-512 and AVX2
clones (csrc/cpu/isa_clones.h). GCC drops a loop to scalar code without a word when it cannot prove
something (aliasing, a reduction it may not reorder), and the numbers stay right: the float32 gate
trig pre-pass ran one lane at a time for two versions before a profile showed it.

So each function of CLONED listed below is compiled here as the build compiles it, disassembled
(objdump), and its AVX-512 clone must hold packed fused multiply-adds on 64-byte registers (zmm),
its AVX2 clone on 32-byte ones (ymm). The threshold is below what one vectorised evaluation of the
function's polynomial needs (a sincos or an erf is 10-20 FMAs), and far above zero, which is what a
scalar loop gives (it uses vfmadd...ss instead). GCC's own report (-fopt-info-vec) cannot tell
this: it names source lines, and a line shared by two template instances (gate and rzz trig) was
reported vectorised while only one instance was.

Needs GCC and objdump on x86-64 (the clones exist only there); about 20 s of compiling per source."""
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parents[1]
# source -> the cloned functions whose loops must be vectorised
CLONED = {
    "csrc/cpu/trig_tables.cpp": ["gate_trig_blocks_f32", "pair_trig_blocks_f32"],
    "csrc/cpu/gated_gelu_cpu.cpp": ["forward_rows_of", "backward_rows_of"],
}
CLONES = {"arch_x86_64_v4": "zmm", "arch_x86_64_v3": "ymm"}
MIN_PACKED_FMAS = 8


def find_gcc():
    for name in ("g++", "c++"):
        path = shutil.which(name)
        if path:
            out = subprocess.run([path, "--version"], capture_output=True, text=True)
            if out.returncode == 0 and "clang" not in out.stdout.lower():
                return path
    return None


GCC, OBJDUMP = find_gcc(), shutil.which("objdump")
pytestmark = pytest.mark.skipif(GCC is None or OBJDUMP is None or platform.machine() != "x86_64",
                                reason="needs GCC and objdump on x86-64, where the kernels are cloned per ISA")


def disassemble(source: Path, tmp_path: Path) -> dict:
    """function heading (demangled, with its clone suffix) -> its instructions, of the compiled source."""
    obj = tmp_path / (source.stem + ".o")
    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{ROOT / 'csrc'}"]
    # The flags CMakeLists.txt compiles these sources with (-fno-trapping-math: its comment says why).
    command = [GCC, "-O3", "-std=gnu++17", "-fPIC", "-fopenmp", "-DNDEBUG", "-fno-trapping-math",
               f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", *includes,
               "-c", str(source), "-o", str(obj)]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, f"compiling {source.name} failed:\n{out.stderr[-4000:]}"
    dis = subprocess.run([OBJDUMP, "-d", "-C", "--no-show-raw-insn", str(obj)], capture_output=True, text=True)
    assert dis.returncode == 0, dis.stderr[-2000:]
    functions = {}
    for chunk in re.split(r"\n(?=[0-9a-f]+ <)", dis.stdout):
        heading, _, body = chunk.partition("\n")
        if m := re.match(r"[0-9a-f]+ <(.*)>:$", heading):
            functions[m.group(1)] = body
    return functions


def packed_fmas(body: str, register: str) -> int:
    return len(re.findall(rf"\bvfn?m(?:add|sub)\w*ps\s[^\n]*%{register}", body))


@pytest.mark.parametrize("source", sorted(CLONED))
def test_cloned_loops_are_vectorised(source, tmp_path):
    functions = disassemble(ROOT / source, tmp_path)
    for name in CLONED[source]:
        for clone, register in CLONES.items():
            found = [body for heading, body in functions.items()
                     if re.search(rf"\b{name}\(", heading) and heading.endswith(f"[clone .{clone}]")]
            assert found, f"{source}: no {clone} clone of {name} in the object (is it still QLAM_ISA_CLONES?)"
            count = max(packed_fmas(body, register) for body in found)
            assert count >= MIN_PACKED_FMAS, (
                f"{source}: {name} [{clone}] has {count} packed FMAs on {register} registers (at least "
                f"{MIN_PACKED_FMAS} expected): its loop runs one lane at a time. Compile it with "
                "-fopt-info-vec-missed to see why GCC did not vectorise it.")
