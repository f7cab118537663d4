"""The training loop: one run of one config, resumable, single-process or DDP.

``train(cfg, resume=False)`` returns the results dict that it also writes to
``<run dir>/results.json``. The data order depends only on the seed and the
epoch, and every checkpoint carries the optimizer, schedule, RNG states and
the epoch's running sums, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
import warnings
from typing import Optional

import numpy as np
import torch
import yaml
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from ..allocator import keep_freed_memory
from ..data import BatchLoader, build_task, task_shape
from ..models import build_model, count_parameters
from . import checkpoint, distributed, optim, records
from .config import Config, config_from_dict
from .progress import Progress

# Keys that may differ between an interrupted run and its resumption.
RESUME_FREE = {("output", "progress"), ("output", "plots"), ("train", "num_threads"), ("train", "dist_timeout_s"),
               ("train", "keep_freed_memory"), ("task", "download")}


class RunDirError(RuntimeError):
    """The run folder is unusable: it holds another run, has nothing to resume, or cannot be written."""


class NonFiniteError(RuntimeError):
    """The loss or the gradients stopped being finite; the run stopped before the bad step changed anything."""


class Interrupted(RuntimeError):
    """Raised by ``stop_after_steps`` to simulate a run stopped from outside (tests)."""


def _seed_all(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _comparable(config: dict) -> dict:
    return {s: {k: v for k, v in sec.items() if (s, k) not in RESUME_FREE} for s, sec in config.items()}


def _autocast(cfg: Config, device: torch.device):
    p = cfg.train.precision
    if p == "bf16" or (p == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, loader: BatchLoader, cfg: Config, device) -> dict:
    """Loss and accuracy over the loader's whole split (summed over ranks)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in loader.batches():
        if not len(y):
            continue
        with _autocast(cfg, device):
            logits = model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(-1) == y).sum()
        sums[2] += len(y)
    distributed.all_reduce_sum(sums)
    model.train(was_training)
    n = max(sums[2].item(), 1)
    return {"loss": sums[0].item() / n, "acc": sums[1].item() / n, "count": int(sums[2].item())}


class Trainer:
    def __init__(self, cfg: Config, resume: bool = False, force: bool = False):
        self.t_start = time.perf_counter()
        self.cfg, self.ctx = cfg, distributed.setup(cfg.train.device, cfg.train.dist_timeout_s)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        if cfg.train.keep_freed_memory:
            keep_freed_memory()  # no page faults on each step's large tensors (a no-op off glibc)
        self.run_dir = cfg.run_dir()
        t = cfg.train
        dev, rank, world = self.ctx.device, self.ctx.rank, self.ctx.world
        _seed_all(cfg.train.seed, cfg.train.deterministic)
        # The model first (its shape follows from the config), so the run's first lines can name its size
        # before any data is read or downloaded; reading the data takes nothing from the seeded RNG.
        self.shape = seq_len, channels, n_classes = task_shape(cfg.task)
        self.model = build_model(cfg.model, channels, n_classes, seq_len).to(dev)
        self.n_params = count_parameters(self.model)
        if self.ctx.is_main:
            print(self.header(resume), flush=True)
        self._prepare_run_dir(resume, force)
        self.task = build_task(cfg.task)
        if (self.task.seq_len, self.task.channels, self.task.n_classes) != (seq_len, channels, n_classes):
            raise RuntimeError(f"task {cfg.task.name}: the data have shape (T={self.task.seq_len}, "
                               f"C={self.task.channels}, {self.task.n_classes} classes), not the "
                               f"{(seq_len, channels, n_classes)} that task_shape predicted")
        self.train_loader = BatchLoader(self.task.train_x, self.task.train_y, self.task.mean, self.task.std,
                                        t.batch_size, shuffle=True, seed=t.seed, drop_last=True, rank=rank,
                                        world=world, device=dev)
        if len(self.train_loader) == 0:
            raise ValueError(f"train.batch_size={t.batch_size} exceeds the {len(self.task.train_y)} training images")
        self.val_loader, self.test_loader = (
            BatchLoader(x, y, self.task.mean, self.task.std, t.eval_batch_size, shuffle=False, rank=rank,
                        world=world, device=dev)
            for x, y in ((self.task.val_x, self.task.val_y), (self.task.test_x, self.task.test_y)))
        self.steps_per_epoch = min(len(self.train_loader), t.max_steps_per_epoch or len(self.train_loader))
        self.optimizer, self.scheduler = optim.build(self.model, t, t.epochs * self.steps_per_epoch)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_val_acc": None, "best_epoch": None,
                      "elapsed": 0.0, "sums": [0.0, 0.0, 0.0, 0.0], "history": [], "skipped": 0, "skips_in_a_row": 0}
        self.saved_step = None  # global step of the newest last.pt (None: there is none yet)
        if resume and (self.run_dir / "last.pt").exists():
            self._restore()
        self.forward = self.model
        if world > 1:
            self.forward = DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if t.compile:
            self.forward = torch.compile(self.forward)

    def header(self, resume: bool = False) -> str:
        """The run's first lines: config file, task, model and its size, device, run folder."""
        cfg, dev, world = self.cfg, self.ctx.device, self.ctx.world
        seq_len, channels, n_classes = self.shape
        source = cfg.source or "(given in Python, not read from a file)"
        procs = f", {world} processes" if world > 1 else ""
        return "\n".join([
            f"qlam-train: config {source}",
            f"qlam-train: task {cfg.task.name} ({seq_len} tokens x {channels} channel{'s' * (channels > 1)}, "
            f"{n_classes} classes), model {cfg.model.name} with {self.n_params:,} parameters",
            f"qlam-train: device {dev} ({records.hardware(dev)}{procs})",
            f"qlam-train: run folder {self.run_dir}{' (resuming)' if resume else ''}"])

    # -- run folder and checkpoints ---------------------------------------------------------
    def _prepare_run_dir(self, resume: bool, force: bool) -> None:
        """Checks the folder before any data is read or step taken, so a bad folder fails in seconds."""
        has_run = (self.run_dir / "last.pt").exists() or (self.run_dir / "results.json").exists()
        fresh = not resume
        if resume and not (self.run_dir / "last.pt").exists():
            # Killed before its first checkpoint: the same run starts from the beginning.
            if not self._same_run_config():
                raise RunDirError(f"--resume: no checkpoint {self.run_dir / 'last.pt'} to resume from (and no "
                                  "config.yaml of this run there); run without --resume to start it")
            fresh = True
            if self.ctx.is_main:
                print(f"qlam-train: {self.run_dir} has no checkpoint yet; starting the run from the beginning",
                      file=sys.stderr)
        if has_run and not resume and not force:
            raise RunDirError(f"run folder {self.run_dir} already holds a run; pass --resume to continue it, "
                              "--force to start over, or choose another output.name")
        if self.ctx.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                probe = self.run_dir / f".write-test-{os.getpid()}"
                probe.write_bytes(b"qlam")
                probe.unlink()
            except OSError as error:
                raise RunDirError(f"run folder {self.run_dir} cannot be written ({error.strerror or error}); "
                                  "choose a writable output.dir (or output.name) or fix the folder's "
                                  "permissions") from None
            for stale in self.run_dir.glob(".*.tmp-*"):  # left by a process killed while writing
                stale.unlink(missing_ok=True)
            if fresh:
                for name in ("last.pt", "best.pt", "results.json", "metrics.jsonl", "metrics.csv"):
                    (self.run_dir / name).unlink(missing_ok=True)
            records.write_config(self.run_dir, self.cfg.to_dict())
        distributed.barrier()

    def _same_run_config(self) -> bool:
        """Whether the folder's config.yaml is this config (up to the keys a resume may change)."""
        try:
            saved = yaml.safe_load((self.run_dir / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return False
        return isinstance(saved, dict) and _comparable(saved) == _comparable(self.cfg.to_dict())

    def _payload(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        return {"config": self.cfg.to_dict(), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "state": dict(self.state, sums=list(self.state["sums"])), "rng": rng,
                "params": self.n_params, "task": self.cfg.task.name, "model_name": self.cfg.model.name}

    def _save(self, name: str) -> None:
        # A non-finite weight would make every later step (and a resume) useless: never save one.
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise NonFiniteError(f"the parameters are no longer finite at global step {self.state['global_step']}; "
                                 f"{name} was not written (the last one written is kept)")
        if self.ctx.is_main:
            checkpoint.save(self._payload(), self.run_dir / name)
        if name == "last.pt":
            self.saved_step = self.state["global_step"]

    def _restore(self) -> None:
        ckpt = checkpoint.load(self.run_dir / "last.pt", map_location=self.ctx.device)
        if _comparable(ckpt["config"]) != _comparable(self.cfg.to_dict()):
            raise RunDirError(f"--resume: the config differs from the one {self.run_dir / 'last.pt'} was trained "
                              "with; resume with the same config and overrides (see its config.yaml)")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = dict(self.state, **ckpt["state"])
        self.saved_step = self.state["global_step"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if "cuda" in ckpt["rng"] and self.ctx.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), self.ctx.device)
        if self.ctx.is_main:
            # A kill between last.pt and metrics.jsonl leaves the metrics an epoch behind: rewrite them.
            records.write_metrics(self.run_dir, self.state["history"])
            if self.cfg.output.plots and self.state["history"]:
                records.plot_curves(self.run_dir, self.state["history"])
            print(f"qlam-train: resuming {self.run_dir / 'last.pt'} at epoch {self.state['epoch'] + 1}, "
                  f"step {self.state['step_in_epoch']} (global step {self.state['global_step']})", file=sys.stderr)

    # -- the loop -----------------------------------------------------------------------------
    def _train_step(self, x, y) -> None:
        t = self.cfg.train
        with _autocast(self.cfg, self.ctx.device):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=t.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        with distributed.collective("the gradient sum of the backward pass"):  # DDP reduces inside backward
            loss.backward()
        bad_grad = torch.zeros((), dtype=torch.float64, device=y.device)
        if t.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            bad_grad = (~torch.isfinite(norm)).double()
        # One reduction and one sync per step, before the optimizer step: every rank sees the same sums,
        # so every rank takes the same decision about a non-finite loss.
        part = torch.stack([loss.detach().double() * len(y), (logits.argmax(-1) == y).sum().double(),
                            torch.tensor(float(len(y)), dtype=torch.float64, device=y.device), bad_grad])
        distributed.all_reduce_sum(part)
        loss_sum, correct, count, grads_bad = part.tolist()
        if not math.isfinite(loss_sum) or grads_bad:
            self._non_finite("loss" if not math.isfinite(loss_sum) else "gradient norm")
            return
        self.optimizer.step()
        self.scheduler.step()
        self.state["skips_in_a_row"] = 0
        sums = self.state["sums"]
        sums[0] += loss_sum
        sums[1] += correct
        sums[2] += count

    def _non_finite(self, what: str) -> None:
        """Stops the run, or (train.skip_nonfinite) skips the batch without an optimizer or schedule step."""
        s, t = self.state, self.cfg.train
        where = (f"epoch {s['epoch'] + 1}, step {s['step_in_epoch'] + 1}/{self.steps_per_epoch} "
                 f"(global step {s['global_step'] + 1})")
        kept = (f"{self.run_dir / 'last.pt'} (global step {self.saved_step}) is kept" if self.saved_step is not None
                else "no checkpoint was written yet")
        if not t.skip_nonfinite:
            raise NonFiniteError(f"non-finite {what} at {where}; the run stopped before this step changed the "
                                 f"weights and {kept}. Lower train.lr, keep train.grad_clip on, or set "
                                 "train.skip_nonfinite=true to skip such batches")
        s["skipped"] += 1
        s["skips_in_a_row"] += 1
        if s["skips_in_a_row"] >= t.max_nonfinite_skips:
            raise NonFiniteError(f"non-finite {what} in {s['skips_in_a_row']} batches in a row, the last at {where} "
                                 f"(train.max_nonfinite_skips={t.max_nonfinite_skips}); the run stopped and {kept}")
        if self.ctx.is_main:
            warnings.warn(f"qlam-train: skipped the batch at {where}: non-finite {what} "
                          f"({s['skipped']} skipped so far)", RuntimeWarning, stacklevel=2)

    def _end_epoch(self, epoch: int) -> None:
        s = self.state
        loss_sum, correct, count, seconds = s["sums"]
        val = evaluate(self.model, self.val_loader, self.cfg, self.ctx.device) if len(self.task.val_y) else None
        row = {"epoch": epoch + 1, "step": s["global_step"], "lr": self.scheduler.get_last_lr()[0],
               "train_loss": loss_sum / count if count else None, "train_acc": correct / count if count else None,
               "val_loss": val["loss"] if val else None, "val_acc": val["acc"] if val else None,
               "epoch_time_s": seconds, "tokens_per_s": count * self.task.seq_len / max(seconds, 1e-9)}
        s["history"].append(row)
        s.update(epoch=epoch + 1, step_in_epoch=0, sums=[0.0, 0.0, 0.0, 0.0])
        score = (row["val_acc"] if val else row["train_acc"]) or 0.0
        improved = s["best_val_acc"] is None or score > s["best_val_acc"]
        if improved:
            s["best_val_acc"], s["best_epoch"] = score, epoch + 1
            # best.pt first: a kill between the two files must not leave a last.pt that names an epoch
            # as best whose weights best.pt does not hold (the resumed run would never rewrite it).
            self._save("best.pt")
        self._save("last.pt")
        if self.ctx.is_main:
            records.write_metrics(self.run_dir, s["history"])
            if self.cfg.output.plots:
                records.plot_curves(self.run_dir, s["history"])
        self.progress.summary(row)

    def fit(self, stop_after_steps: Optional[int] = None) -> dict:
        cfg, s = self.cfg, self.state
        self.progress = Progress(cfg.output.progress and self.ctx.is_main, self.task.seq_len, self.ctx.is_main)
        self.model.train()
        for epoch in range(s["epoch"], cfg.train.epochs):
            self.progress.start(epoch, cfg.train.epochs, self.steps_per_epoch, s["step_in_epoch"])
            t0 = time.perf_counter()
            for x, y in self.train_loader.batches(epoch, s["step_in_epoch"]):
                if s["step_in_epoch"] >= self.steps_per_epoch:
                    break
                self._train_step(x, y)
                s["step_in_epoch"] += 1
                s["global_step"] += 1
                now = time.perf_counter()
                s["sums"][3] += now - t0
                s["elapsed"] += now - t0
                t0 = now
                self.progress.update(s["sums"], self.scheduler.get_last_lr()[0])
                every = cfg.train.checkpoint_every_steps
                if every and s["global_step"] % every == 0 and s["step_in_epoch"] < self.steps_per_epoch:
                    self._save("last.pt")
                if stop_after_steps is not None and s["global_step"] >= stop_after_steps:
                    self.progress.close()
                    raise Interrupted(f"stopped after {s['global_step']} steps")
            self.progress.close()
            self._end_epoch(epoch)
        return self._finish()

    def _finish(self) -> dict:
        s = self.state
        distributed.barrier()  # under DDP every rank reads rank 0's file once it is written
        best = checkpoint.load(self.run_dir / "best.pt", map_location=self.ctx.device)
        self.model.load_state_dict(best["model"])
        test = evaluate(self.model, self.test_loader, self.cfg, self.ctx.device)
        tokens = sum(r["tokens_per_s"] * r["epoch_time_s"] for r in s["history"])
        results = {"task": self.cfg.task.name, "model": self.cfg.model.name, "params": self.n_params,
                   "seed": self.cfg.train.seed, "best_val_acc": s["best_val_acc"], "best_epoch": s["best_epoch"],
                   "test_acc": test["acc"], "test_loss": test["loss"], "test_count": test["count"],
                   "epochs": s["epoch"], "steps": s["global_step"], "skipped_steps": s["skipped"],
                   "train_images": len(self.task.train_y),
                   "train_time_s": s["elapsed"], "wall_time_s": time.perf_counter() - self.t_start, "tokens_per_s": tokens / max(s["elapsed"], 1e-9),
                   "world_size": self.ctx.world, "device": str(self.ctx.device),
                   "hardware": records.hardware(self.ctx.device), "torch": torch.__version__}
        if self.ctx.is_main:
            records.write_results(self.run_dir, results)
            self.progress.message(f"test accuracy {test['acc']:.4f} (best epoch {s['best_epoch']}); "
                                  f"results in {self.run_dir / 'results.json'}")
        return results


def train(cfg, resume: bool = False, force: bool = False, stop_after_steps: Optional[int] = None) -> dict:
    """Trains one config (a Config or a plain dict) and returns its results; see the module doc."""
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    return Trainer(cfg, resume=resume, force=force).fit(stop_after_steps=stop_after_steps)
