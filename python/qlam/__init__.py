"""qlam: Quantum Long-Attention Memory for PyTorch.

- ``qlam.QLAM``: a drop-in replacement for ``nn.LSTM`` whose memory is a simulated statevector.
- ``qlam.ops.scan``: the fused, differentiable scan (``torch.ops.qlam.scan``).
- ``qlam.reference.scan``: the same mathematics in plain PyTorch (the specification).
- ``qlam.show_config()``: how the compiled extension was built.
"""
__version__ = "0.1.0"

from . import _extension, ops, reference  # noqa: E402
from .info import show_config  # noqa: E402
from .layer import QLAM  # noqa: E402

__all__ = ["QLAM", "ops", "reference", "show_config", "__version__"]
