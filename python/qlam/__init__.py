"""qlam: Quantum Long-Attention Memory for PyTorch.

- ``qlam.QLAM``: a drop-in replacement for ``nn.LSTM`` whose memory is a simulated statevector.
- ``qlam.QLAMCell``: one token at a time (``nn.LSTMCell``'s interface), the same numbers as ``qlam.QLAM``.
- ``qlam.ops.scan``: the fused, differentiable scan (``torch.ops.qlam.scan``).
- ``qlam.reference.scan``: the same mathematics in plain PyTorch (the specification).
- ``qlam.show_config()``: how the compiled extension was built.
"""
__version__ = "0.1.0"

from . import _extension, ops, reference  # noqa: E402
from .layer import QLAM  # noqa: E402
from .cell import QLAMCell  # noqa: E402


def show_config() -> str:
    """Returns (and prints) how the compiled extension was built; see ``python -m qlam.info``."""
    # Imported here, not at the top: `python -m qlam.info` would otherwise find qlam.info
    # already imported by the package and warn (runpy's RuntimeWarning).
    from .info import show_config as show

    return show()

__all__ = ["QLAM", "QLAMCell", "ops", "reference", "show_config", "__version__"]
