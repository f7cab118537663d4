"""Synthetic memory tasks with known answers, and a tiny trainer for any ``qlam.models`` classifier.

Tasks (each batch drawn fresh from a seeded generator; inputs (B, T, C) float, targets (B,)):

- ``recall``: ``T`` tokens, each one of ``vocab`` symbols (one-hot); the target is the symbol ``lag``
  steps before the last token (``lag = T - 1``: the first token). With ``blank=True`` every token but
  the one to recall is all-zero (MNIST's background: the memory must hold one token through ``T - 1``
  empty steps); otherwise the other tokens are random distractors. ``anywhere`` (with ``blank``): the
  token sits at a random position of the first half, so the number of blank steps after it varies
  (as the strokes of a digit do).
- ``adding`` (Hochreiter & Schmidhuber 1997): two channels, a value U(0, 1) and a marker; one marked
  position in each half; the target is the sum of the two marked values (regression, MSE; predicting
  the mean gives 1/6 ~ 0.167).
- ``parity``: ``T`` bits (one channel, 0/1); the target is their XOR.

``train_synthetic(model_cfg, task, ...)`` trains a model built by ``qlam.models.build_model`` (pooling
``last``: the answer must be in the state at the end) with AdamW and returns its learning curve.
``benchmarks/synthetic_memory.py`` runs QLAM variants against LSTM, Transformer and SSM on them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn


@dataclass
class Task:
    name: str
    in_channels: int
    n_outputs: int  # classes, or 1 for regression
    seq_len: int
    sample: Callable[[int, torch.Generator], Tuple[Tensor, Tensor]]
    regression: bool = False
    chance: float = 0.0  # accuracy of guessing (classification) or MSE of predicting the mean (regression)


def recall(seq_len: int, lag: int = None, vocab: int = 8, blank: bool = False, anywhere: bool = False) -> Task:
    lag = seq_len - 1 if lag is None else lag
    if not 0 <= lag < seq_len:
        raise ValueError(f"recall: lag must be in [0, {seq_len - 1}], got {lag}")
    if anywhere and not blank:
        raise ValueError("recall: anywhere needs blank (the one non-blank token is the one to recall)")
    pos = seq_len - 1 - lag

    def sample(batch: int, g: torch.Generator):
        tokens = torch.randint(0, vocab, (batch, seq_len), generator=g)
        x = nn.functional.one_hot(tokens, vocab).float()
        if anywhere:
            # The token sits anywhere in the first half; blanks before and after it.
            where = torch.randint(0, seq_len // 2, (batch,), generator=g)
            keep = (torch.arange(seq_len)[None, :] == where[:, None]).float()[..., None]
            return x * keep, tokens[torch.arange(batch), where]
        if blank:
            keep = torch.zeros(seq_len, 1)
            keep[pos] = 1
            x = x * keep
        return x, tokens[:, pos]

    if anywhere:
        name = f"recall-T{seq_len}-anywhere-blank"
    else:
        name = f"recall-T{seq_len}-lag{lag}" + ("-blank" if blank else "")
    return Task(name, vocab, vocab, seq_len, sample, chance=1.0 / vocab)


def adding(seq_len: int) -> Task:
    half = seq_len // 2

    def sample(batch: int, g: torch.Generator):
        values = torch.rand(batch, seq_len, generator=g)
        first = torch.randint(0, half, (batch,), generator=g)
        second = torch.randint(half, seq_len, (batch,), generator=g)
        marks = torch.zeros(batch, seq_len)
        rows = torch.arange(batch)
        marks[rows, first] = 1
        marks[rows, second] = 1
        return torch.stack([values, marks], dim=-1), (values * marks).sum(1)

    return Task(f"adding-T{seq_len}", 2, 1, seq_len, sample, regression=True, chance=1.0 / 6)


def parity(seq_len: int) -> Task:
    def sample(batch: int, g: torch.Generator):
        bits = torch.randint(0, 2, (batch, seq_len), generator=g)
        return bits.float()[..., None], bits.sum(1) % 2

    return Task(f"parity-T{seq_len}", 1, 2, seq_len, sample, chance=0.5)


TASKS = {"recall": recall, "adding": adding, "parity": parity}


def make_task(spec: str) -> Task:
    """``"recall:64"``, ``"recall:64:lag=10"``, ``"recall:64:blank"``, ``"recall:64:blank:anywhere"``,
    ``"adding:100"``, ``"parity:16"``."""
    name, *rest = spec.split(":")
    if name not in TASKS or not rest:
        raise ValueError(f"task spec {spec!r}: expected NAME:T[:opts] with NAME in {sorted(TASKS)}")
    kwargs = {}
    for opt in rest[1:]:
        if "=" in opt:
            k, v = opt.split("=", 1)
            kwargs[k] = int(v)
        else:
            kwargs[opt] = True
    return TASKS[name](int(rest[0]), **kwargs)


def _metric(task: Task, out: Tensor, y: Tensor) -> Tuple[Tensor, float]:
    if task.regression:
        loss = nn.functional.mse_loss(out[:, 0], y)
        return loss, loss.item()
    loss = nn.functional.cross_entropy(out, y)
    return loss, (out.argmax(-1) == y).float().mean().item()


def train_synthetic(model: nn.Module, task: Task, steps: int = 500, batch_size: int = 64, lr: float = 3e-3,
                    weight_decay: float = 0.0, eval_every: int = 50, eval_size: int = 500, seed: int = 0,
                    grad_clip: float = 1.0, time_limit_s: float = math.inf) -> Dict[str, object]:
    """AdamW with a linear warm-up (5 %) and cosine decay; a fixed evaluation batch; the learning curve.

    ``curve`` rows: step, train loss (mean since the last row), eval loss, eval metric (accuracy, or MSE for
    regression), seconds so far.
    """
    g = torch.Generator().manual_seed(seed)
    eval_x, eval_y = task.sample(eval_size, torch.Generator().manual_seed(10_000 + seed))
    from .train.optim import lr_factor, param_groups
    opt = torch.optim.AdamW(param_groups(model, lr, weight_decay), lr=lr)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup, 0.0))
    curve: List[Dict[str, float]] = []
    t0, running, n_running = time.perf_counter(), 0.0, 0

    def evaluate(step):
        model.eval()
        with torch.no_grad():
            loss, metric = _metric(task, model(eval_x).float(), eval_y)
        model.train()
        curve.append({"step": step, "train_loss": running / max(n_running, 1), "eval_loss": loss.item(),
                      "eval_metric": metric, "seconds": time.perf_counter() - t0})

    model.train()
    for step in range(steps):
        x, y = task.sample(batch_size, g)
        loss, _ = _metric(task, model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        running += loss.item()
        n_running += 1
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            evaluate(step + 1)
            running, n_running = 0.0, 0
            if time.perf_counter() - t0 > time_limit_s:
                break
    final = curve[-1]
    best = (min if task.regression else max)(r["eval_metric"] for r in curve)
    return {"task": task.name, "metric": "mse" if task.regression else "acc", "chance": task.chance,
            "final": final["eval_metric"], "best": best, "steps": final["step"], "seconds": final["seconds"],
            "curve": curve}
