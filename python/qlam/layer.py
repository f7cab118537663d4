"""qlam.QLAM: a drop-in replacement for torch.nn.LSTM / nn.GRU (docs/design.md §4)."""
from __future__ import annotations

import functools
import math
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _extension, ops, reference

BACKENDS = ("auto", "kernel", "reference")
ANGLE_MAPS = ("linear", "tanh")
STEP_SIZES = ("none", "selective", "fixed")

_warned_fallback = False


def _warn_fallback_once(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"qlam.QLAM(backend='auto') is using the pure-PyTorch reference scan because {reason}; "
            "it is much slower and its memory grows with the sequence length",
            RuntimeWarning,
            stacklevel=3,
        )


def _reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverses each sequence of x (B, T, ...) within its length; padding stays in place."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).expand(B, T)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)
    return x.gather(1, index.reshape(B, T, *([1] * (x.dim() - 2))).expand_as(x))


class QLAMDirection(nn.Module):
    """One layer and direction: angles and query from x_t, the scan, and the readout.

    The options after ``bias`` (see ``QLAM``) change how x_t becomes the circuit's angles; their
    defaults give the original map ``alpha_t = W_a x_t + b_a`` (weights scaled by 0.5 at init).
    """

    def __init__(self, input_size, hidden_size, n_qubits, n_heads, depth, entangler, n_measurements,
                 pair_features, bias, device=None, dtype=None, *, angle_init=0.5, angle_bias=True,
                 angle_map="linear", step_size="fixed", dt_min=0.001, dt_max=0.1, reset_state_every_token=False):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.n_qubits, self.n_heads, self.depth = n_qubits, n_heads, depth
        self.entangler, self.pair_features, self.n_measurements = entangler, pair_features, n_measurements
        self.n_features = reference.num_features(n_qubits, pair_features)
        self.angle_map, self.step_size = angle_map, step_size
        self.reset_state_every_token = reset_state_every_token
        n_ent = n_heads * depth * reference.num_pairs(n_qubits) if entangler == "rzz" else 0
        self.angles = nn.Linear(input_size, n_heads * depth * n_qubits * 3 + n_ent, bias=bias and angle_bias, **kw)
        self.query = nn.Linear(input_size, n_heads * n_measurements * self.n_features, bias=bias, **kw)
        self.readout = nn.Linear(n_heads * n_measurements, hidden_size, bias=bias, **kw)
        with torch.no_grad():
            # Near-identity circuits at the start, so the state keeps what early tokens wrote
            # (the role of the forget-gate bias in an LSTM); measured on tests' toy memory task.
            self.angles.weight.mul_(angle_init)
            if self.angles.bias is not None:
                self.angles.bias.uniform_(-0.1, 0.1)
        if step_size in ("selective", "fixed"):
            # delta_t[h] = softplus(w_h . x_t + c_h) scales every angle of head h at token t (a selective
            # SSM's step size): softplus(c_h) log-uniform in [dt_min, dt_max] over the heads, so at the
            # start some heads move slowly (long memory) and some fast; delta -> 0 is the identity step
            # when the entangler is rzz or none (cnot and cz are applied in full at every token).
            # step_size="fixed" (the default): delta[h] = softplus(c_h), learned but the same at every token.
            self.step = nn.Linear(input_size, n_heads, **kw) if step_size == "selective" else None
            self.step_bias = nn.Parameter(torch.empty(n_heads, **kw)) if step_size == "fixed" else None
            with torch.no_grad():
                frac = torch.linspace(0, 1, n_heads) if n_heads > 1 else torch.zeros(1)
                dt = torch.exp(math.log(dt_min) + frac * (math.log(dt_max) - math.log(dt_min)))
                c = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
                (self.step.bias if self.step is not None else self.step_bias).copy_(c)
        else:
            self.step = self.step_bias = None

    def _fixed_step(self) -> Tensor:
        """delta[h] = softplus(c_h) of step_size "fixed", (H,), in float32 at least."""
        c = self.step_bias
        return nn.functional.softplus(c if c.dtype in (torch.float32, torch.float64) else c.float())

    def step_sizes(self, x: Tensor) -> Optional[Tensor]:
        """delta_t per head (B, T, H) with step_size "selective" or "fixed", else None."""
        if self.step_bias is not None:
            return self._fixed_step().expand(*x.shape[:-1], self.n_heads)
        if self.step is None:
            return None
        d = self.step(x)
        return nn.functional.softplus(d if d.dtype in (torch.float32, torch.float64) else d.float())

    def _step_folds_into_angles(self) -> bool:
        """With a fixed step, delta[h] scales head h's rows of the angle projection the same way at
        every token, so it can scale the (small) weight instead of every token's angles: the same
        numbers up to rounding, three fewer passes over the angles in the training step. Only when
        nothing observes the projection's own output (hooks, e.g. qlam.diagnostics) or replaces it."""
        a = self.angles
        return (self.step_bias is not None and self.angle_map == "linear" and type(a) is nn.Linear
                and not (a._forward_hooks or a._forward_pre_hooks or a._forward_hooks_with_kwargs)
                and not (nn.modules.module._global_forward_hooks
                         or nn.modules.module._global_forward_pre_hooks))

    def circuit_angles(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """The circuit of every token: angles (B, T, H, L, n, 3) and rzz angles (B, T, H, L, P) or None."""
        B, T, _ = x.shape
        H, L, n = self.n_heads, self.depth, self.n_qubits
        P = reference.num_pairs(n)
        n_rot = H * L * n * 3
        folded = self._step_folds_into_angles()
        if folded:
            delta = self._fixed_step()
            # The projection's rows are (H, L, n, 3) rotation angles, then (H, L, P) rzz angles.
            row_scale = delta[:, None].expand(H, L * n * 3).reshape(-1)
            if self.entangler == "rzz":
                row_scale = torch.cat([row_scale, delta[:, None].expand(H, L * P).reshape(-1)])
            w, b = self.angles.weight, self.angles.bias
            raw = nn.functional.linear(x, w * row_scale.to(w.dtype)[:, None],
                                       None if b is None else b * row_scale.to(b.dtype))
        else:
            raw = self.angles(x)
        # The scan runs in float32 at least, also under autocast (half angles lose the phase).
        if raw.dtype not in (torch.float32, torch.float64):
            raw = raw.float()
        if self.angle_map == "tanh":
            raw = math.pi * torch.tanh(raw)
        # One split (its backward is one cat) rather than two slices (each backward a zero-filled copy).
        # Explicit sizes, not -1: B * T may be 0 (an empty batch or sequence).
        if self.entangler == "rzz":
            rot, ent = raw.split([n_rot, H * L * P], dim=-1)
            angles, ent = rot.reshape(B, T, H, L, n, 3), ent.reshape(B, T, H, L, P)
        else:
            angles, ent = raw.reshape(B, T, H, L, n, 3), None
        delta = None if folded else self.step_sizes(x)
        if delta is not None:
            delta = delta.to(raw.dtype)
            angles = angles * delta[..., None, None, None]
            ent = ent * delta[..., None, None] if ent is not None else None
        return angles, ent

    def _scan_reset(self, scan, angles, ent, init_state, lengths):
        """Diagnosis only: every token's circuit acts on |0...0> (no memory between tokens)."""
        B, T, H, L, n, _ = angles.shape
        flat = lambda a: None if a is None else a.reshape(B * T, 1, *a.shape[2:])  # noqa: E731
        feats, states = scan(flat(angles), flat(ent), None, None, self.entangler, self.pair_features)
        feats, states = feats.reshape(B, T, H, -1), states.reshape(B, T, H, 2**n)
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=angles.device)
        keep = torch.arange(T, device=angles.device)[None, :] < lengths[:, None]
        feats = feats * keep[:, :, None, None].to(feats.dtype)
        if init_state is None:
            init_state = torch.zeros(B, H, 2**n, dtype=states.dtype, device=states.device)
            init_state[..., 0] = 1
        if T == 0:
            return feats, init_state
        last = states[torch.arange(B, device=states.device), (lengths - 1).clamp_min(0)]
        return feats, torch.where((lengths > 0)[:, None, None], last, init_state.to(states.dtype))

    def forward(self, x: Tensor, init_state: Optional[Tensor], lengths: Optional[Tensor], use_kernel: bool,
                checkpoint_every: Optional[int]) -> Tuple[Tensor, Tensor]:
        B, T, _ = x.shape
        H = self.n_heads
        angles, ent = self.circuit_angles(x)
        if init_state is not None:
            init_state = init_state.to(torch.complex128 if angles.dtype == torch.float64 else torch.complex64)
        if use_kernel:
            scan = functools.partial(ops.scan, checkpoint_every=checkpoint_every)
        else:
            scan = reference.scan
        if self.reset_state_every_token:
            feats, final = self._scan_reset(scan, angles, ent, init_state, lengths)
        else:
            feats, final = scan(angles, ent, init_state, lengths, self.entangler, self.pair_features)
        query = self.query(x).reshape(B, T, H, self.n_measurements, self.n_features).to(feats.dtype)
        # y[h, j] = sum_k Q[h, j, k] f[h, k]: the expectation of the query-chosen observable.
        if use_kernel:
            readings = ops.readout(query, feats)
        else:
            readings = torch.einsum("bthjk,bthk->bthj", query, feats)
        return self.readout(readings.reshape(B, T, H * self.n_measurements).to(x.dtype)), final


class QLAM(nn.Module):
    """Quantum Long-Attention Memory layer with the interface of ``nn.LSTM``.

    ``output, state = layer(x, state=None)`` with ``x`` of shape (T, B, input_size)
    (or (B, T, input_size) with ``batch_first=True``) or a ``PackedSequence``.
    ``output`` has width ``hidden_size * (2 if bidirectional else 1)``; ``state``
    is the complex tensor of final quantum states, shape
    (num_layers * num_directions, B, n_heads, 2**n_qubits), which can be passed
    back in to continue the sequences.

    Args beyond nn.LSTM's: ``n_qubits`` per head, ``n_heads`` independent
    memories, ``depth`` circuit layers per token, ``entangler`` ("cnot", "cz",
    "rzz", "none"), ``n_measurements`` query-chosen observables read per head,
    ``pair_features`` (also measure two-qubit Paulis), ``backend`` ("auto":
    the fused kernel where it can run, else the reference with a warning;
    "kernel"; "reference") and ``checkpoint_every`` (see ``qlam.ops.scan``).

    How a token becomes its circuit. The defaults, ``entangler="rzz"`` and
    ``step_size="fixed"``, were chosen by the table in results/qlam-remedies/README.md
    (3 seeds on sMNIST and sCIFAR-10: 75 % and 38 % against 32 % and 29 % for the
    original map). ``step_size="fixed"`` multiplies head h's angles (rzz angles
    included) by a learned step ``delta[h] = softplus(c_h)``, initialised
    log-uniformly over the heads in [``dt_min``, ``dt_max``] = [0.001, 0.1]: each
    token then moves the state a little, and with rzz a step of 0 is the identity
    (a CNOT ring is applied in full at every token whatever the angles). It is a
    reparameterisation of the paper's map ``alpha_t = W_a x_t + b_a``, which
    ``entangler="cnot", step_size="none"`` gives exactly. ``step_size="selective"``
    makes the step input-dependent, ``delta_t[h] = softplus(w_h . x_t + c_h)``, as a
    selective SSM's (beyond the paper's linear map). ``angle_init`` multiplies W_a at
    initialisation (0.5); ``angle_bias=False`` drops b_a; ``angle_map="tanh"`` bounds
    the angles, ``pi * tanh(W_a x_t + b_a)``. ``reset_state_every_token``
    (diagnosis only) applies each token's circuit to |0...0>, so the layer has no
    memory; a state passed in is then ignored.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 n_qubits: int = 6, n_heads: int = 4, depth: int = 2, entangler: str = "rzz",
                 n_measurements: int = 4, pair_features: bool = False, backend: str = "auto",
                 checkpoint_every: Optional[int] = None, angle_init: float = 0.5, angle_bias: bool = True,
                 angle_map: str = "linear", step_size: str = "fixed", dt_min: float = 0.001, dt_max: float = 0.1,
                 reset_state_every_token: bool = False, device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("n_qubits", n_qubits), ("n_heads", n_heads), ("depth", depth),
                            ("n_measurements", n_measurements)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"QLAM: {name} must be a positive integer, got {value!r}")
        if entangler not in reference.ENTANGLERS:
            raise ValueError(f"QLAM: entangler must be one of {reference.ENTANGLERS}, got {entangler!r}")
        if backend not in BACKENDS:
            raise ValueError(f"QLAM: backend must be one of {BACKENDS}, got {backend!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"QLAM: dropout must be in [0, 1], got {dropout!r}")
        if angle_map not in ANGLE_MAPS:
            raise ValueError(f"QLAM: angle_map must be one of {ANGLE_MAPS}, got {angle_map!r}")
        if step_size not in STEP_SIZES:
            raise ValueError(f"QLAM: step_size must be one of {STEP_SIZES}, got {step_size!r}")
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(f"QLAM: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, dropout, bidirectional
        self.n_qubits, self.n_heads, self.depth, self.entangler = n_qubits, n_heads, depth, entangler
        self.n_measurements, self.pair_features = n_measurements, pair_features
        self.backend, self.checkpoint_every = backend, checkpoint_every
        self.angle_init, self.angle_bias, self.angle_map = angle_init, angle_bias, angle_map
        self.step_size, self.dt_min, self.dt_max = step_size, dt_min, dt_max
        self.reset_state_every_token = reset_state_every_token
        circuit = {"angle_init": angle_init, "angle_bias": angle_bias, "angle_map": angle_map, "step_size": step_size,
                   "dt_min": dt_min, "dt_max": dt_max, "reset_state_every_token": reset_state_every_token}
        self.num_directions = 2 if bidirectional else 1
        cells = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(QLAMDirection(layer_input, hidden_size, n_qubits, n_heads, depth, entangler,
                                           n_measurements, pair_features, bias, device=device, dtype=dtype,
                                           **circuit))
        self.cells = nn.ModuleList(cells)

    def extra_repr(self) -> str:
        s = (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, n_qubits={self.n_qubits}, "
             f"n_heads={self.n_heads}, depth={self.depth}, entangler={self.entangler!r}, "
             f"n_measurements={self.n_measurements}")
        for name in ("batch_first", "bidirectional", "pair_features"):
            if getattr(self, name):
                s += f", {name}=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.angle_init != 0.5:
            s += f", angle_init={self.angle_init}"
        if not self.angle_bias:
            s += ", angle_bias=False"
        if self.angle_map != "linear":
            s += f", angle_map={self.angle_map!r}"
        if self.step_size != "fixed":  # the default
            s += f", step_size={self.step_size!r}"
        if self.step_size != "none" and (self.dt_min, self.dt_max) != (0.001, 0.1):
            s += f", dt_min={self.dt_min}, dt_max={self.dt_max}"
        if self.reset_state_every_token:
            s += ", reset_state_every_token=True"
        return s

    def _use_kernel(self, device: torch.device) -> bool:
        if self.backend == "reference":
            return False
        if self.backend == "kernel":
            _extension.require()
            return True
        if not _extension.AVAILABLE:
            _warn_fallback_once(f"the compiled extension is not available ({_extension.IMPORT_ERROR})")
            return False
        if self.n_qubits > _extension.max_qubits():
            _warn_fallback_once(f"n_qubits={self.n_qubits} exceeds the kernels' maximum {_extension.max_qubits()}")
            return False
        if not _extension.supports(device):
            _warn_fallback_once(f"the extension was built without kernels for {device.type}")
            return False
        return True

    def initial_state(self, batch_size: int, device=None, dtype=torch.complex64) -> Tensor:
        """The |0...0> states: (num_layers * num_directions, B, n_heads, 2**n_qubits)."""
        state = torch.zeros(self.num_layers * self.num_directions, batch_size, self.n_heads, 2**self.n_qubits,
                            device=device, dtype=dtype)
        state[..., 0] = 1
        return state

    def forward(self, x: Union[Tensor, PackedSequence], state: Optional[Tensor] = None,
                lengths: Optional[Tensor] = None) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
        """Runs the layer; ``lengths`` (B,) optionally marks padding of a tensor input."""
        packed = isinstance(x, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("QLAM: pass lengths only with a padded tensor, not with a PackedSequence")
            sorted_indices, unsorted_indices = x.sorted_indices, x.unsorted_indices
            x, lengths = pad_packed_sequence(x, batch_first=True)
        else:
            if x.dim() != 3:
                raise ValueError(f"QLAM: input must be (T, B, input_size) or (B, T, input_size) with batch_first, "
                                 f"or a PackedSequence; got shape {tuple(x.shape)}")
            if not self.batch_first:
                x = x.transpose(0, 1)
        B, T, features = x.shape
        if features != self.input_size:
            raise ValueError(f"QLAM: expected input_size={self.input_size} features, got {features}")
        if lengths is not None:
            lengths = torch.as_tensor(lengths).to(device=x.device, dtype=torch.long)
            if lengths.shape != (B,):
                raise ValueError(f"QLAM: lengths must have shape ({B},), got {tuple(lengths.shape)}")
        expected = (self.num_layers * self.num_directions, B, self.n_heads, 2**self.n_qubits)
        if state is not None and tuple(state.shape) != expected:
            raise ValueError(f"QLAM: state must have shape {expected} "
                             "(num_layers * num_directions, B, n_heads, 2**n_qubits), "
                             f"got {tuple(state.shape)}")
        use_kernel = self._use_kernel(x.device)
        finals = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = self.cells[index]
                init = state[index] if state is not None else None
                inp = layer_input
                if direction == 1:
                    inp = _reverse_padded(inp, lengths) if lengths is not None else inp.flip(1)
                out, final = cell(inp, init, lengths, use_kernel, self.checkpoint_every)
                if direction == 1:
                    out = _reverse_padded(out, lengths) if lengths is not None else out.flip(1)
                outputs.append(out)
                finals.append(final)
            layer_input = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            if self.dropout and self.training and layer + 1 < self.num_layers:
                layer_input = nn.functional.dropout(layer_input, p=self.dropout)
        output, new_state = layer_input, torch.stack(finals)
        if packed:
            # Repack with the input's own ordering, as nn.LSTM does.
            order = sorted_indices if sorted_indices is not None else torch.arange(B, device=x.device)
            pk = pack_padded_sequence(output.index_select(0, order.to(output.device)), lengths[order.to(lengths.device)].cpu(),
                                      batch_first=True, enforce_sorted=True)
            return PackedSequence(pk.data, pk.batch_sizes, sorted_indices, unsorted_indices), new_state
        if not self.batch_first:
            output = output.transpose(0, 1)
        return output, new_state
