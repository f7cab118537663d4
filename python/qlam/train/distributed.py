"""Process setup: one process, or DistributedDataParallel under torchrun (NCCL on GPU, gloo on CPU)."""
from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str, timeout_s: float = 600.0) -> Context:
    """Reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); starts the process group when world > 1.

    A rank whose peers stop answering fails its collective after ``timeout_s`` (gloo's own default is 30
    minutes); a peer that dies under torchrun is noticed sooner, as torchrun then stops every worker.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA GPU is available; use train.device=cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        # The group lives as long as the process (train() calls in one process share it), but must be destroyed
        # before the interpreter finalizes: a gloo worker thread may still hold the last collective's work, and
        # releasing its tensors then takes the GIL, which during finalization ends the thread -> std::terminate.
        atexit.register(teardown)
    return Context(rank, world, dev)


class DistributedError(RuntimeError):
    """A collective failed: another process died, hangs, or cannot be reached."""


# What gloo and NCCL say when a peer is gone; their errors are plain RuntimeErrors.
_PEER_GONE = ("gloo", "nccl", "connection reset", "connection closed", "timed out", "timeout", "broken pipe")


@contextlib.contextmanager
def collective(what: str):
    """Turns a peer's death or hang during ``what`` into one DistributedError that says what to do."""
    try:
        yield
    except RuntimeError as error:
        text = str(error)
        gone = isinstance(error, getattr(dist, "DistError", ())) or any(w in text.lower() for w in _PEER_GONE)
        if not (dist.is_available() and dist.is_initialized() and gone):
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise DistributedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()}: {what} with the other processes failed ({first}); "
            "one of them probably died or hung (a hung one is given up on after train.dist_timeout_s). "
            "Continue from the last checkpoint with the same command and --resume") from error


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        with collective("a sum"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        with collective("a barrier"):
            dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
