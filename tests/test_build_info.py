"""The extension reports how it was built."""
import subprocess
import sys

import torch

import qlam


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


def test_ops_are_registered():
    for name in ("scan", "scan_checkpointed", "scan_forward", "scan_backward"):
        assert hasattr(torch.ops.qlam, name)
    schema = str(torch.ops.qlam.scan.default._schema)
    assert schema == ("qlam::scan(Tensor angles, Tensor? ent_angles, Tensor? init_state, Tensor? lengths, "
                      "str entangler, bool pair_features) -> (Tensor features, Tensor final_state)")
