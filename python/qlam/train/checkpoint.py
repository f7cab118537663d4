"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked by a content hash.

A checkpoint is a plain ``torch.save`` dict (format, config, model, optimizer,
scheduler, progress, RNG states, history) plus ``checksum``, a SHA-256 over
everything else; a truncated file fails to unpickle, a corrupted one fails the
hash, and both raise ``CheckpointError`` without touching any file. A file that
would need code to unpickle (any global beyond tensors and plain containers) is
refused by ``weights_only=True`` before anything in it runs. A failed write (a full
disk) raises ``CheckpointError`` and leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Dict

import torch

FORMAT = "qlam-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or of another format."""


def _digest(obj: Any, h) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.is_complex():
            t = torch.view_as_real(t)
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in obj:
            h.update(repr(key).encode())
            _digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _digest(item, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def checksum(payload: Dict[str, Any]) -> str:
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, h)
    return h.hexdigest()


def save(payload: Dict[str, Any], path) -> None:
    """Writes to a temporary file in the same folder, syncs it, then renames it over ``path``."""
    path = Path(path)
    payload = dict(payload, format=FORMAT)
    payload["checksum"] = checksum(payload)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        name = errno.errorcode.get(error.errno, "") if error.errno else ""
        raise CheckpointError(f"could not write checkpoint {path}: {error.strerror or error}"
                              f"{f' ({name})' if name else ''}; the previous {path.name}, if any, is unchanged. "
                              "Free space in (or choose another) output.dir and continue with --resume") from error
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load(path, map_location="cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(_load_failure(path, error)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qlam training checkpoint (expected format {FORMAT!r})")
    if payload.get("checksum") != checksum(payload):
        raise CheckpointError(f"checkpoint {path} is corrupt (its content hash does not match) and was not loaded")
    return payload


def _load_failure(path: Path, error: Exception) -> str:
    """A one-line reason; torch's own weights_only text advises weights_only=False, which must not be followed."""
    text = str(error)
    found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL (\S+)", text)
    if found:
        return (f"{path} is not a qlam training checkpoint and was not loaded: it refers to the Python object "
                f"{found.group(1)}, not only tensors and plain containers; loading it would run code from the "
                "file, so it was refused unread")
    if isinstance(error, EOFError) or not text:
        return f"checkpoint {path} is empty or truncated and was not loaded"
    if "Weights only load failed" in text:  # bytes that are no pickle at all
        found = re.search(r"(Unsupported operand \S+)", text)
        return (f"checkpoint {path} is truncated or corrupt, or not a torch file at all, and was not loaded"
                f"{f' ({found.group(1)})' if found else ''}")
    first = text.splitlines()[0]
    return f"checkpoint {path} is truncated or corrupt and was not loaded ({type(error).__name__}: {first})"
