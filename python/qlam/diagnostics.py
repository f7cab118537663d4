"""Diagnostics of QLAM's memory: does what a token writes into the quantum state reach the end?

Functions over any model that contains ``qlam.QLAM`` layers (the classifier of ``qlam.models``):

- ``state_motion``: how far each token moves the state, ``1 - |<psi_t|psi_{t-1}>|^2`` per position.
- ``feature_spread``: the standard deviation across examples of each Pauli feature at each position,
  next to the spread of Haar-random states, ``1/sqrt(2**n + 1)`` (a scrambled memory sits there).
- ``gradient_profile``: the norm of the loss gradient at each token's circuit angles (and at the
  layer's input) per position: does an early pixel reach the loss?
- ``memory_contribution``: loss and accuracy of the model as it is and with the quantum state
  reset to ``|0...0>`` before every token (``reset_state_every_token``), the same weights.
- ``probe_memory``: linear probes of the label from the final states, reading the measured
  single-qubit features, or every observable (the full density matrix): whether the class is in
  the memory at all, and whether the layer's measurements can see it.

``benchmarks/memory_diagnostics.py`` runs them all on a config (untrained or from a checkpoint)
and writes a JSON and a PNG.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from . import _extension, ops, reference
from .layer import QLAMDirection


def qlam_cells(model: nn.Module) -> List[Tuple[str, QLAMDirection]]:
    """Every QLAM layer direction in the model, with its module name, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QLAMDirection)]


def _scan_fn(x: Tensor):
    if _extension.AVAILABLE and _extension.supports(x.device):
        return ops.scan
    return reference.scan


@contextlib.contextmanager
def reset_state_every_token(model: nn.Module, on: bool = True) -> Iterator[nn.Module]:
    """Temporarily sets ``reset_state_every_token`` on every QLAM cell of the model."""
    cells = qlam_cells(model)
    before = [c.reset_state_every_token for _, c in cells]
    try:
        for _, c in cells:
            c.reset_state_every_token = on
        yield model
    finally:
        for (_, c), b in zip(cells, before):
            c.reset_state_every_token = b


@contextlib.contextmanager
def _no_chunking(model: nn.Module):
    """The recompute-chunk training path calls every cell once per chunk: run the whole sequence at once."""
    chunk = getattr(model, "recompute_chunk", None)
    try:
        if chunk is not None:
            model.recompute_chunk = None
        yield
    finally:
        if chunk is not None:
            model.recompute_chunk = chunk


@contextlib.contextmanager
def capture(model: nn.Module, retain_grad: bool = False) -> Iterator[Dict[str, Dict[str, Tensor]]]:
    """Records each cell's input ``x`` (B, T, d) and raw angle projection ``raw`` during a forward.

    With ``retain_grad`` the two keep their gradients after ``backward()`` (``.grad``).
    """
    seen: Dict[str, Dict[str, Tensor]] = {}
    handles = []
    for name, cell in qlam_cells(model):
        def pre(module, args, name=name):
            x = args[0]
            if retain_grad and x.requires_grad:
                x.retain_grad()
            seen.setdefault(name, {})["x"] = x

        def post(module, args, out, name=name):
            if retain_grad and out.requires_grad:
                out.retain_grad()
            seen.setdefault(name, {})["raw"] = out

        handles.append(cell.register_forward_pre_hook(pre))
        handles.append(cell.angles.register_forward_hook(post))
    try:
        with _no_chunking(model):
            yield seen
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def cell_inputs(model: nn.Module, x: Tensor) -> Dict[str, Tensor]:
    """The input of every QLAM cell (B, T, d) when the model runs on x."""
    with capture(model) as seen:
        model(x)
    return {name: v["x"].detach() for name, v in seen.items()}


@torch.no_grad()
def state_trajectory(cell: QLAMDirection, x: Tensor) -> Tensor:
    """The state after every token, (B, T, H, 2**n) complex, from |0...0> (x is the cell's input)."""
    angles, ent = cell.circuit_angles(x)
    scan = _scan_fn(angles)
    B, T, H = angles.shape[:3]
    psi, states = None, []
    for t in range(T):
        e = ent[:, t:t + 1] if ent is not None else None
        init = None if cell.reset_state_every_token else psi
        _, psi = scan(angles[:, t:t + 1], e, init, None, cell.entangler, cell.pair_features)
        states.append(psi)
    return torch.stack(states, dim=1)


def state_motion(states: Tensor) -> Tensor:
    """``1 - |<psi_t|psi_{t-1}>|^2`` for states (B, T, H, N), psi_{-1} = |0...0>: (B, T, H)."""
    first = torch.zeros_like(states[:, :1])
    first[..., 0] = 1
    prev = torch.cat([first, states[:, :-1]], dim=1)
    overlap = (prev.conj() * states).sum(-1).abs() ** 2
    return (1 - overlap).clamp_min(0).real if overlap.is_complex() else (1 - overlap).clamp_min(0)


@torch.no_grad()
def cell_features(cell: QLAMDirection, x: Tensor) -> Tuple[Tensor, Tensor]:
    """The Pauli features (B, T, H, K) and final states (B, H, N) of the cell on its input x."""
    angles, ent = cell.circuit_angles(x)
    scan = _scan_fn(angles)
    if cell.reset_state_every_token:
        return cell._scan_reset(scan, angles, ent, None, None)
    return scan(angles, ent, None, None, cell.entangler, cell.pair_features)


def random_state_spread(n_qubits: int) -> float:
    """Standard deviation of a Pauli expectation over Haar-random n-qubit states: 1/sqrt(2**n + 1)."""
    return 1.0 / math.sqrt(2**n_qubits + 1)


def feature_spread(features: Tensor) -> Dict[str, object]:
    """Spread across examples of features (B, T, H, K): per position (mean over H, K) and at the end."""
    std = features.std(dim=0)  # (T, H, K)
    final = std[-1]
    return {"std_per_position": std.mean(dim=(1, 2)), "final_std": final, "final_std_mean": final.mean().item(),
            "final_abs_mean": features[:, -1].abs().mean().item()}


def gradient_profile(model: nn.Module, x: Tensor, y: Tensor,
                     loss_fn=nn.functional.cross_entropy) -> Dict[str, Dict[str, Tensor]]:
    """Per cell, the batch-mean norm per position of dLoss/d(angle projection) and dLoss/d(cell input)."""
    was_training = model.training
    model.eval()
    try:
        with capture(model, retain_grad=True) as seen:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
        out = {}
        for name, v in seen.items():
            ga = v["raw"].grad
            gx = v["x"].grad
            out[name] = {"angles": ga.norm(dim=-1).mean(0) if ga is not None else None,
                         "input": gx.norm(dim=-1).mean(0) if gx is not None else None}
        model.zero_grad(set_to_none=True)
        return out
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Tuple[Tensor, Tensor]]) -> Dict[str, float]:
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    try:
        with _no_chunking(model):
            for x, y in batches:
                logits = model(x).float()
                loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(-1) == y).sum().item()
                count += len(y)
    finally:
        model.train(was_training)
    return {"loss": loss / max(count, 1), "acc": correct / max(count, 1), "count": int(count)}


def memory_contribution(model: nn.Module, batches: List[Tuple[Tensor, Tensor]]) -> Dict[str, Dict[str, float]]:
    """The same weights with the memory as it is and reset to |0...0> before every token."""
    normal = evaluate(model, batches)
    with reset_state_every_token(model):
        reset = evaluate(model, batches)
    return {"normal": normal, "reset": reset}


def density_features(states: Tensor) -> Tensor:
    """Every observable of the states (B, H, N): the real and imaginary parts of psi psi^dagger, (B, H*2*N*N)."""
    rho = states[..., :, None] * states[..., None, :].conj()
    return torch.cat([rho.real.flatten(1), rho.imag.flatten(1)], dim=1).float()


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, n_classes: int = 10,
                 weight_decay=(1e-4, 1e-3, 1e-2, 1e-1), steps: int = 100) -> Dict[str, float]:
    """Multinomial logistic regression (L-BFGS, L2) on standardised features: train and test accuracy.

    With several ``weight_decay`` values, the one with the best accuracy on the last fifth of the
    training examples (fitted on the rest) is refitted on all of them.
    """
    if isinstance(weight_decay, (tuple, list)):
        if len(weight_decay) == 1:
            weight_decay = weight_decay[0]
        else:
            cut = len(train_y) * 4 // 5
            scores = [linear_probe(train_x[:cut], train_y[:cut], train_x[cut:], train_y[cut:], n_classes, wd,
                                   steps)["test_acc"] for wd in weight_decay]
            best = weight_decay[max(range(len(scores)), key=scores.__getitem__)]
            return dict(linear_probe(train_x, train_y, test_x, test_y, n_classes, best, steps), weight_decay=best)
    train_x, test_x = train_x.float(), test_x.float()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    lin = nn.Linear(a.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(a), train_y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return {"train_acc": (lin(a).argmax(-1) == train_y).float().mean().item(),
                "test_acc": (lin(b).argmax(-1) == test_y).float().mean().item(), "n_features": a.shape[1]}


@torch.no_grad()
def final_memory(model: nn.Module, x: Tensor, batch_size: int = 250) -> Dict[str, Dict[str, Tensor]]:
    """Per cell, the final single-qubit (or pair) features (B, H*K) and final states (B, H, N)."""
    out: Dict[str, Dict[str, list]] = {}
    cells = dict(qlam_cells(model))
    for piece in x.split(batch_size):
        for name, inp in cell_inputs(model, piece).items():
            feats, final = cell_features(cells[name], inp)
            d = out.setdefault(name, {"features": [], "states": []})
            d["features"].append(feats[:, -1].flatten(1))
            d["states"].append(final)
    return {name: {k: torch.cat(v) for k, v in d.items()} for name, d in out.items()}


def probe_memory(model: nn.Module, train: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor],
                 n_classes: int = 10) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Per cell, linear probes of the label from the final measured features and from the full final state."""
    a, b = final_memory(model, train[0]), final_memory(model, test[0])
    out = {}
    for name in a:
        out[name] = {
            "measured_features": linear_probe(a[name]["features"], train[1], b[name]["features"], test[1], n_classes),
            "density_matrix": linear_probe(density_features(a[name]["states"]), train[1],
                                           density_features(b[name]["states"]), test[1], n_classes),
        }
    return out


def histogram_features(x: Tensor, bins: int = 16) -> Tensor:
    """The position-blind baseline: a normalised intensity histogram of each sequence (B, T, 1) -> (B, bins)."""
    v = x[..., 0]
    lo, hi = v.min().item(), v.max().item()
    idx = ((v - lo) / max(hi - lo, 1e-9) * bins).long().clamp(0, bins - 1)
    return nn.functional.one_hot(idx, bins).float().mean(1)


def background_mask(x: Tensor) -> Tensor:
    """Tokens whose (single-channel) input equals the smallest value in the batch: MNIST's background."""
    v = x[..., 0]
    return v <= v.min() + 1e-6


def step_size_stats(cell: QLAMDirection, inp: Tensor, mask: Optional[Tensor]) -> Optional[Dict[str, list]]:
    """With step_size="selective": the mean delta per head over background and over other tokens."""
    with torch.no_grad():
        delta = cell.step_sizes(inp)
    if delta is None:
        return None
    if mask is None:
        return {"all": delta.mean((0, 1)).tolist()}
    return {"background": delta[mask].mean(0).tolist(), "foreground": delta[~mask].mean(0).tolist()}


@torch.no_grad()
def parameter_sensitivity(cell: QLAMDirection, x: Tensor, eps: float = 3e-3, seed: int = 0) -> Tensor:
    """How far one optimiser-sized step moves the memory: ``1 - |<psi_t|psi'_t>|^2`` per position (T,).

    ``psi'`` runs with every weight of the angle projection moved by ``+-eps`` (random signs: the size
    of one Adam step at learning rate eps). A memory whose final state turns over under such a step
    cannot be trained by gradient descent at that rate (its loss landscape is rougher than the step).
    """
    g = torch.Generator().manual_seed(seed)
    w = cell.angles.weight
    sign = (torch.randint(0, 2, w.shape, generator=g) * 2 - 1).to(w)
    before = state_trajectory(cell, x)
    w.add_(eps * sign)
    try:
        after = state_trajectory(cell, x)
    finally:
        w.sub_(eps * sign)
    overlap = (before.conj() * after).sum(-1).abs() ** 2  # (B, T, H)
    return (1 - overlap).clamp_min(0).mean((0, 2))
