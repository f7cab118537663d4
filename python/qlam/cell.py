"""qlam.QLAMCell: one token at a time, with the interface of torch.nn.LSTMCell."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .layer import QLAM, QLAMDirection

_STATE_DTYPES = (torch.complex64, torch.complex128)


class QLAMCell(nn.Module):
    """One step of ``qlam.QLAM``, for decoding, streaming and control loops (``nn.LSTMCell``'s interface).

    ``h, state = cell(x, state=None)`` with ``x`` of shape (B, input_size), or (input_size,)
    unbatched. ``h`` is (B, hidden_size) (unbatched: (hidden_size,)); ``state`` is the complex
    quantum memory, (B, n_heads, 2**n_qubits) (unbatched: (n_heads, 2**n_qubits)), complex64
    (complex128 for a float64 cell); ``None`` starts from |0...0> (``cell.initial_state(B)``).
    Unlike ``nn.LSTMCell`` there is one state tensor, not a pair ``(h, c)``: ``h`` is a readout of
    the state and is not fed back.

    The arguments and their defaults are ``qlam.QLAM``'s (``entangler="rzz"``,
    ``step_size="fixed"``, ...) without the sequence ones; see its docstring. The cell wraps one
    ``QLAMDirection``, the module a ``QLAM`` holds per layer and direction, and runs it on a
    sequence of one token, so stepping the cell over a sequence, carrying the state, gives the
    numbers of ``QLAM`` on the whole sequence. ``QLAMCell.from_layer(layer)`` builds a cell that
    shares a trained ``QLAM``'s parameters: train with the sequence layer, decode with the cell::

        layer = qlam.QLAM(8, 32, batch_first=True)
        ...  # train layer on (B, T, 8) sequences
        cell = qlam.QLAMCell.from_layer(layer)
        state = None
        for x_t in stream:                 # x_t: (B, 8)
            h, state = cell(x_t, state)    # h: (B, 32); state: (B, 4, 64) complex
            x_t = ...                      # e.g. the next token chosen from h
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, n_qubits: int = 6,
                 n_heads: int = 4, depth: int = 2, entangler: str = "rzz", n_measurements: int = 4,
                 pair_features: bool = False, backend: str = "auto", angle_init: float = 0.5,
                 angle_bias: bool = True, angle_map: str = "linear", step_size: str = "fixed",
                 dt_min: float = 0.001, dt_max: float = 0.1, device=None, dtype=None):
        super().__init__()
        try:
            # The layer checks the options and initialises its direction exactly as a QLAM does
            # (so a cell and a layer built after the same torch.manual_seed have the same weights).
            layer = QLAM(input_size, hidden_size, 1, bias, n_qubits=n_qubits, n_heads=n_heads, depth=depth,
                         entangler=entangler, n_measurements=n_measurements, pair_features=pair_features,
                         backend=backend, angle_init=angle_init, angle_bias=angle_bias, angle_map=angle_map,
                         step_size=step_size, dt_min=dt_min, dt_max=dt_max, device=device, dtype=dtype)
        except ValueError as e:
            message = str(e)
            raise ValueError("QLAMCell:" + message[len("QLAM:"):] if message.startswith("QLAM:") else message) \
                from None
        self._configure(layer, layer.cells[0], backend)

    def _configure(self, layer: QLAM, direction: QLAMDirection, backend: str) -> None:
        self.input_size, self.hidden_size, self.bias = direction.angles.in_features, layer.hidden_size, layer.bias
        self.n_qubits, self.n_heads, self.depth = layer.n_qubits, layer.n_heads, layer.depth
        self.entangler, self.n_measurements, self.pair_features = layer.entangler, layer.n_measurements, \
            layer.pair_features
        self.backend = backend
        self.angle_init, self.angle_bias, self.angle_map = layer.angle_init, layer.angle_bias, layer.angle_map
        self.step_size, self.dt_min, self.dt_max = layer.step_size, layer.dt_min, layer.dt_max
        self.direction = direction

    @classmethod
    def from_layer(cls, layer: QLAM, layer_index: int = 0, backend: Optional[str] = None) -> "QLAMCell":
        """A cell that shares the parameters of layer ``layer_index`` of a unidirectional ``qlam.QLAM``.

        The cell holds the layer's own ``QLAMDirection`` (no copy): training either one changes
        both. For a stacked layer (``num_layers > 1``), chain one cell per layer, each fed the
        previous cell's ``h`` (the layer's dropout between layers acts only in training).
        ``backend`` defaults to the layer's.
        """
        if not isinstance(layer, QLAM):
            raise TypeError(f"QLAMCell.from_layer: expected a qlam.QLAM, got {type(layer).__name__}")
        if layer.bidirectional:
            raise ValueError("QLAMCell.from_layer: the layer is bidirectional; its backward direction reads the "
                             "sequence from the end and cannot be stepped token by token (use bidirectional=False)")
        if isinstance(layer_index, bool) or not isinstance(layer_index, int) \
                or not 0 <= layer_index < layer.num_layers:
            raise ValueError(f"QLAMCell.from_layer: layer_index must be an integer in [0, {layer.num_layers - 1}] "
                             f"(the layer has num_layers={layer.num_layers}), got {layer_index!r}")
        backend = layer.backend if backend is None else backend
        if backend not in ("auto", "kernel", "reference"):
            raise ValueError(f"QLAMCell.from_layer: backend must be one of ('auto', 'kernel', 'reference'), "
                             f"got {backend!r}")
        cell = cls.__new__(cls)
        nn.Module.__init__(cell)
        cell._configure(layer, layer.cells[layer_index], backend)
        return cell

    def extra_repr(self) -> str:
        s = (f"{self.input_size}, {self.hidden_size}, n_qubits={self.n_qubits}, n_heads={self.n_heads}, "
             f"depth={self.depth}, entangler={self.entangler!r}, n_measurements={self.n_measurements}")
        if not self.bias:
            s += ", bias=False"
        if self.pair_features:
            s += ", pair_features=True"
        if self.step_size != "fixed":
            s += f", step_size={self.step_size!r}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def initial_state(self, batch_size: Optional[int] = None, device=None, dtype=None) -> Tensor:
        """The |0...0> states, (batch_size, n_heads, 2**n_qubits); batch_size None: unbatched (n_heads, 2**n_qubits).

        ``device`` and ``dtype`` default to the cell's parameters' device and the matching complex
        type (complex128 for a float64 cell, else complex64).
        """
        weight = self.direction.angles.weight
        if device is None:
            device = weight.device
        if dtype is None:
            dtype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
        shape = (self.n_heads, 2**self.n_qubits) if batch_size is None else (batch_size, self.n_heads,
                                                                               2**self.n_qubits)
        state = torch.zeros(shape, device=device, dtype=dtype)
        state[..., 0] = 1
        return state

    def _check(self, input: Tensor, state: Optional[Tensor]) -> None:
        if not isinstance(input, Tensor):
            raise TypeError(f"QLAMCell: input must be a tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"QLAMCell: input must be (B, input_size) or (input_size,) unbatched, with "
                             f"input_size={self.input_size}; got shape {tuple(input.shape)}")
        if state is None:
            return
        if not isinstance(state, Tensor):
            raise TypeError(f"QLAMCell: state must be a complex tensor or None, got {type(state).__name__}")
        batched = input.dim() == 2
        expected = ((input.shape[0],) if batched else ()) + (self.n_heads, 2**self.n_qubits)
        if tuple(state.shape) != expected:
            what = "(B, n_heads, 2**n_qubits)" if batched else "(n_heads, 2**n_qubits) for an unbatched input"
            raise ValueError(f"QLAMCell: state must have shape {expected} {what}, got {tuple(state.shape)}")
        if state.dtype not in _STATE_DTYPES:
            raise TypeError(f"QLAMCell: state must be complex64 or complex128 (a quantum state, as returned by "
                            f"the cell or initial_state()), got {state.dtype}")
        if state.device != input.device:
            raise ValueError(f"QLAMCell: state is on {state.device} but input is on {input.device}; "
                             "they must be on the same device")

    def forward(self, input: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """One token: ``h, state = cell(input, state)``; see the class docstring for the shapes."""
        self._check(input, state)
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
            state = state.unsqueeze(0) if state is not None else None
        # QLAM's backend choice (it reads only backend and n_qubits, which the cell has).
        use_kernel = QLAM._use_kernel(self, input.device)
        out, final = self.direction(input.unsqueeze(1), state, None, use_kernel, None)
        h = out.squeeze(1)
        if not batched:
            return h.squeeze(0), final.squeeze(0)
        return h, final
