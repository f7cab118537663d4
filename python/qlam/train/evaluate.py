"""Evaluating a saved checkpoint on the validation or test split of its own task."""
from __future__ import annotations

from typing import Optional

import torch

from ..data import BatchLoader, build_task
from ..models import build_model, count_parameters
from . import checkpoint
from .config import config_from_dict
from .trainer import evaluate


def evaluate_checkpoint(path, split: str = "test", data_root: Optional[str] = None,
                        device: Optional[str] = None) -> dict:
    ckpt = checkpoint.load(path)
    overrides = [f"task.data_root={data_root}"] if data_root else []
    if device:
        overrides.append(f"train.device={device}")
    cfg = config_from_dict(ckpt["config"], overrides)
    dev = torch.device("cuda" if cfg.train.device == "cuda" or (cfg.train.device == "auto"
                                                                and torch.cuda.is_available()) else "cpu")
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.channels, task.n_classes, task.seq_len).to(dev)
    model.load_state_dict(ckpt["model"])
    out = {"checkpoint": str(path), "task": cfg.task.name, "model": cfg.model.name,
           "params": count_parameters(model), "epoch": ckpt["state"]["epoch"]}
    splits = ("val", "test") if split == "both" else (split,)
    for name in splits:
        x, y = (task.val_x, task.val_y) if name == "val" else (task.test_x, task.test_y)
        loader = BatchLoader(x, y, task.mean, task.std, cfg.train.eval_batch_size, shuffle=False, device=dev)
        metrics = evaluate(model, loader, cfg, dev)
        out.update({f"{name}_acc": metrics["acc"], f"{name}_loss": metrics["loss"], f"{name}_count": metrics["count"]})
    return out
