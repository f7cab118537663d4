"""Loads the compiled extension (qlam._C), which registers torch.ops.qlam.*.

A missing or broken build is not fatal on import: qlam.reference still works
and qlam.QLAM falls back to it with a warning. Code that needs the kernels
calls `require()` and gets an error that says what went wrong and how to fix it.
"""
from __future__ import annotations

import torch  # noqa: F401  (loads libtorch before the extension)

try:
    from . import _C  # type: ignore[attr-defined]

    IMPORT_ERROR: Exception | None = None
except ImportError as error:  # not built, or built against another torch
    _C = None
    IMPORT_ERROR = error

AVAILABLE = _C is not None
# Read once: a plain dict that torch.compile can trace through (a pybind call it cannot).
_BUILD_INFO = dict(_C.build_info()) if AVAILABLE else {}


def build_info() -> dict:
    """How the extension was built: with_cuda, cuda_archs, cuda_version, torch_version, max_qubits."""
    require()
    return dict(_BUILD_INFO)


def max_qubits() -> int:
    return _BUILD_INFO.get("max_qubits", 0)


def supports(device: torch.device) -> bool:
    """Whether the compiled kernels can run on this device."""
    if device.type == "cpu":
        return AVAILABLE
    return device.type == "cuda" and _BUILD_INFO.get("with_cuda", False)


def require() -> None:
    if not AVAILABLE:
        raise RuntimeError(
            "qlam's compiled extension (qlam._C) could not be loaded: "
            f"{IMPORT_ERROR}. Rebuild it against the installed torch with "
            "`pip install --no-build-isolation .` in the qlam checkout, or use "
            "qlam.reference.scan / QLAM(backend='reference')."
        )
