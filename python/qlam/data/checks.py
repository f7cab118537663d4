"""Checks that a data file is what its name says before it is used: IDX files and CIFAR-10 python batches.

Without them a truncated download or a wrong file shows up as a torchvision assertion, an
unpickling error deep in a loader, or a silently short data set. Here each is a
``DatasetFormatError`` naming the file, what was wrong and what to do. CIFAR batches are
unpickled by an unpickler that can only build numpy arrays, so a batch that would run code
when unpickled is refused before anything in it runs (a plain ``pickle.load``, as torchvision
uses, would run it).
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

N_CLASSES = 10
REPLACE = "delete it (and any unpacked copy) and provide the original file again"


class DatasetFormatError(ValueError):
    """A data file that is truncated, damaged or of another format; the message names the file."""


def check_idx(path: Path, shape: Tuple[int, ...], what: str, shown: Optional[str] = None) -> int:
    """Checks an uncompressed IDX file of unsigned bytes with ``len(shape) + 1`` dimensions; returns its count.

    ``shape`` is the per-item shape, e.g. (28, 28) for images and () for labels; labels are also
    checked to lie in 0..9. Messages name ``shown`` (e.g. the .gz it was unpacked from), else ``path``.
    """
    path = Path(path)
    name = shown or str(path)
    nd = len(shape) + 1
    with open(path, "rb") as f:
        header = f.read(4 + 4 * nd)
        magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
        if magic != 0x0800 + nd:
            got = "an empty file" if magic is None else f"magic number 0x{magic:08x}"
            raise DatasetFormatError(f"{name}: not an IDX file of {what}: {got}, expected 0x{0x0800 + nd:08x} "
                                     f"(unsigned bytes, {nd} dimension{'s' if nd > 1 else ''}); {REPLACE}")
        if len(header) < 4 + 4 * nd:
            raise DatasetFormatError(f"{name}: truncated inside its IDX header; {REPLACE}")
        dims = struct.unpack(f">{nd}I", header[4:])
        if tuple(dims[1:]) != tuple(shape):
            raise DatasetFormatError(f"{name}: IDX {what} of shape {tuple(dims)}, expected (N, "
                                     f"{', '.join(map(str, shape))}); {REPLACE}")
        size = path.stat().st_size
        expected = 4 + 4 * nd + int(np.prod(dims, dtype=np.int64))
        if size != expected:
            state = "truncated" if size < expected else "longer than its header says"
            raise DatasetFormatError(f"{name}: {state}: {size} bytes, but its header (shape {tuple(dims)}) needs "
                                     f"{expected}; {REPLACE}")
        if not shape:  # labels: read them all (a few KB) and check the range
            labels = np.frombuffer(f.read(), dtype=np.uint8)
            if labels.size and labels.max() >= N_CLASSES:
                raise DatasetFormatError(f"{name}: label {int(labels.max())} is outside 0..{N_CLASSES - 1}; "
                                         f"{REPLACE}")
    return dims[0]


def check_idx_pair(images: Path, labels: Path, size: int = 28, shown=lambda path: None) -> None:
    """An images file and its labels file: both valid and of the same length (``shown``: see check_idx)."""
    n_img = check_idx(images, (size, size), f"{size}x{size} images", shown(images))
    n_lab = check_idx(labels, (), "labels", shown(labels))
    if n_img != n_lab:
        raise DatasetFormatError(f"{shown(images) or images} holds {n_img} images but {shown(labels) or labels} "
                                 f"holds {n_lab} labels; {REPLACE}")


# What a CIFAR-10 python batch may contain besides dicts, lists, strings and numbers: numpy arrays.
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
                  ("numpy._core.numeric", "_frombuffer")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does "
                                         "(unpickling it could run code)")
        module = module.replace("numpy.core.", "numpy._core.")  # numpy 2 renamed the package
        return super().find_class(module, name)


def load_pickle_safely(path: Path):
    """Unpickles ``path`` (latin-1 strings, as the Python 2 originals need) allowing numpy arrays only."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError, struct.error) as error:
        reason = str(error) or type(error).__name__
        if isinstance(error, EOFError) or "truncated" in reason:
            reason = f"truncated ({reason})"
        raise DatasetFormatError(f"{path}: not a readable CIFAR-10 python batch: {reason}; {REPLACE}") from None


def check_cifar_batch(path: Path) -> int:
    """A batch must be a dict with uint8 ``data`` (N, 3072) and N ``labels`` in 0..9; returns N."""
    entry = load_pickle_safely(path)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        got = f"a dict with keys {sorted(map(str, entry))}" if isinstance(entry, dict) else type(entry).__name__
        raise DatasetFormatError(f"{path}: not a CIFAR-10 python batch: expected a dict with 'data' and "
                                 f"'labels', got {got}; {REPLACE}")
    data, labels = entry["data"], entry["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetFormatError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {got}; {REPLACE}")
    try:
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{path}: 'labels' must be a list of integers; {REPLACE}") from None
    if len(lab) != len(data):
        raise DatasetFormatError(f"{path}: {len(data)} images but {len(lab)} labels; {REPLACE}")
    if lab.size and (lab.min() < 0 or lab.max() >= N_CLASSES):
        raise DatasetFormatError(f"{path}: labels outside 0..{N_CLASSES - 1}; {REPLACE}")
    return len(data)


def check_cifar_folder(folder: Path, batches, meta: Optional[str] = "batches.meta") -> None:
    """Every batch in ``batches`` and the metadata file in ``folder`` (cifar-10-batches-py)."""
    folder = Path(folder)
    missing = [name for name in list(batches) + ([meta] if meta else []) if not (folder / name).is_file()]
    if missing:
        raise DatasetFormatError(f"{folder}: incomplete CIFAR-10 folder, missing {', '.join(missing)}; "
                                 "provide all of data_batch_1..5, test_batch and batches.meta")
    for name in batches:
        check_cifar_batch(folder / name)
    if meta:
        info = load_pickle_safely(folder / meta)
        if not isinstance(info, dict) or "label_names" not in info:
            raise DatasetFormatError(f"{folder / meta}: not CIFAR-10 metadata (a dict with 'label_names'); "
                                     f"{REPLACE}")
