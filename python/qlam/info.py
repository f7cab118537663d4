"""Prints how qlam was built: `python -m qlam.info` or `qlam.show_config()`."""
from __future__ import annotations

import os
import warnings

import torch

from . import _binary, _extension


def cuda_program() -> str:
    """QLAM_CUDA_PROGRAM as the CUDA scan reads it (csrc/cuda/register_cuda.cu): unset or empty is 'shared'.
    The scan accepts 'shared' and 'register' and refuses anything else."""
    return os.environ.get("QLAM_CUDA_PROGRAM") or "shared"


def show_config() -> str:
    """Returns (and prints) the build configuration; warns on a torch mismatch."""
    lines = [f"qlam {__import__('qlam').__version__}", f"installed torch: {torch.__version__}"]
    if not _extension.AVAILABLE:
        lines.append(f"compiled extension: NOT available ({_extension.IMPORT_ERROR})")
        lines.append("fallback: qlam.reference (pure PyTorch)")
    else:
        info = _extension.build_info()
        lines += [
            f"built against torch: {info['torch_version']}",
            f"CUDA kernels: {'yes' if info['with_cuda'] else 'no'}",
        ]
        if info["with_cuda"]:
            lines += [f"CUDA architectures: {info['cuda_archs']}", f"nvcc: {info['cuda_version']}"]
            try:  # what the file really carries: native code, and PTX that newer GPUs JIT-compile
                targets = _binary.cuda_targets(_extension._C.__file__)
                lines.append(f"GPU code: native {', '.join(targets['sass']) or 'none'}; "
                             f"PTX {', '.join(targets['ptx']) or 'none'}")
            except (OSError, ValueError) as error:
                lines.append(f"GPU code: could not be read ({error})")
            program = cuda_program()
            if program in ("shared", "register"):
                lines.append(f"CUDA scan program: {program} (QLAM_CUDA_PROGRAM: 'shared', the default, or "
                             "'register', issue 15's register kernels where the state fits; not yet measured on a GPU)")
            else:
                lines.append(f"CUDA scan program: INVALID: QLAM_CUDA_PROGRAM={program!r} must be 'shared' or "
                             "'register'; the scan refuses to run on CUDA until it is")
        lines += [
            f"largest n_qubits: {info['max_qubits']}",
            f"CUDA device visible: {torch.cuda.is_available()}",
        ]
        if info["torch_version"] != torch.__version__:
            message = (
                f"qlam was built against torch {info['torch_version']} but torch {torch.__version__} "
                "is installed; rebuild with `pip install --no-build-isolation .`"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            lines.append("WARNING: " + message)
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    show_config()
