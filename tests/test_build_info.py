"""The extension reports how it was built."""
import re
import shutil
import subprocess
import sys

import pytest
import torch

import qlam
from qlam import _binary


def test_build_info_fields():
    info = qlam._extension.build_info()
    assert set(info) == {"with_cuda", "cuda_archs", "cuda_version", "torch_version", "max_qubits"}
    assert info["max_qubits"] >= 12
    assert info["torch_version"] == torch.__version__
    if info["with_cuda"]:
        assert info["cuda_archs"] and info["cuda_version"]


def test_show_config_prints_the_build():
    out = subprocess.run([sys.executable, "-m", "qlam.info"], capture_output=True, text=True, check=True).stdout
    assert "built against torch" in out and "largest n_qubits: 12" in out


@pytest.mark.skipif(not qlam._extension.AVAILABLE or not qlam._extension.build_info()["with_cuda"],
                    reason="a build without the CUDA kernels has no CUDA program to report")
def test_show_config_reports_the_cuda_program(monkeypatch):
    monkeypatch.delenv("QLAM_CUDA_PROGRAM", raising=False)
    assert "CUDA scan program: shared" in qlam.show_config()
    monkeypatch.setenv("QLAM_CUDA_PROGRAM", "register")
    assert "CUDA scan program: register" in qlam.show_config()
    monkeypatch.setenv("QLAM_CUDA_PROGRAM", "fast")
    assert "INVALID: QLAM_CUDA_PROGRAM='fast' must be 'shared' or 'register'" in qlam.show_config()


def test_ops_are_registered():
    for name in ("scan", "scan_checkpointed", "scan_forward", "scan_backward"):
        assert hasattr(torch.ops.qlam, name)
    schema = str(torch.ops.qlam.scan.default._schema)
    assert schema == ("qlam::scan(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
                      "str entangler, bool pair_features) -> (Tensor features, Tensor final_state)")


def _extension_file() -> str:
    return qlam._extension._C.__file__


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF check")
def test_extension_uses_the_shared_libstdcxx():
    # A static libstdc++ inside the module crashed (SIGSEGV) on the first error message
    # torch formatted for it, on a GPU machine whose compiler had no libstdc++.so.
    assert "libstdc++.so.6" in _binary.needed_libraries(_extension_file())


def _declared_targets(archs: str):
    """CMake's list as built ("80-real,90-real,100-real,120") -> the sm_/compute_ names it must give."""
    sass, ptx = set(), set()
    for arch in archs.split(","):
        number = re.match(r"\d+[a-z]?", arch).group()
        if not arch.endswith("-virtual"):
            sass.add(f"sm_{number}")
        if not arch.endswith("-real"):
            ptx.add(f"compute_{number}")
    return sass, ptx


@pytest.mark.skipif(not qlam._extension._BUILD_INFO.get("with_cuda"), reason="built without the CUDA kernels")
def test_library_carries_the_declared_gpu_architectures():
    targets = _binary.cuda_targets(_extension_file())
    sass, ptx = _declared_targets(qlam._extension.build_info()["cuda_archs"])
    assert set(targets["sass"]) == sass and set(targets["ptx"]) == ptx
    # newer GPUs than any native target JIT the PTX: it must be of the highest architecture
    highest = max(int(re.match(r"sm_(\d+)", s).group(1)) for s in targets["sass"])
    assert targets["ptx"] and max(int(p.split("_")[1]) for p in targets["ptx"]) >= highest
    cuobjdump = shutil.which("cuobjdump")
    if cuobjdump:  # the toolkit's own reader agrees with ours
        listing = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", _extension_file()],
                                 capture_output=True, text=True, check=True).stdout
        assert sorted(set(re.findall(r"\.(sm_\d+[a-z]?)\.cubin", listing))) == sorted(targets["sass"])
        assert {p.replace("compute", "sm") for p in targets["ptx"]} == set(re.findall(r"\.(sm_\d+[a-z]?)\.ptx", listing))


def test_show_config_warns_when_torch_differs_from_the_build(monkeypatch, capsys):
    from qlam import info

    monkeypatch.setitem(qlam._extension._BUILD_INFO, "torch_version", "2.0.0+other")
    with pytest.warns(RuntimeWarning, match=r"built against torch 2\.0\.0\+other but torch .* is installed"):
        text = info.show_config()
    assert "WARNING" in text and "pip install --no-build-isolation" in text
