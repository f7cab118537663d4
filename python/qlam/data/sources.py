"""Reads the image data sets with torchvision's classes, from the original file formats.

Each loader returns uint8 images (N, H, W, C) and int64 labels for train and test.
MNIST / Fashion-MNIST: torchvision reads uncompressed idx files from
``<root>/<Class>/raw``; gzipped copies found elsewhere are unpacked there first.
CIFAR-10: the python batches in ``<root>/cifar-10-batches-py``, checked against
the md5s of the original download or of the rebuilt copy (../shared/data/README.md).
Every file is checked first (``checks``): a truncated or foreign file stops with its name.
A set found in none of the data roots is downloaded with torchvision (its URLs, mirrors and md5s)
into the writable root, unless ``task.download: false`` or ``$QLAM_NO_DOWNLOAD=1``; sockets time
out after ``DOWNLOAD_TIMEOUT_S``, so without a network the run stops within seconds with one error.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import Callable, List, Optional, Tuple
from urllib.error import URLError

import torch
from torch import Tensor
from torchvision import datasets
from torchvision.datasets import utils as tv_utils
from torchvision.datasets.utils import check_integrity

from .checks import DatasetFormatError, check_cifar_folder, check_idx_pair
from .roots import NO_DOWNLOAD_ENV, candidate_roots, download_allowed, not_found, writable_root

Split = Tuple[Tensor, Tensor]
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# Folder names (relative to a root) where gzipped idx files may lie.
GZ_FOLDERS = {"MNIST": ("MNIST/raw", "mnist", "MNIST"), "FashionMNIST": ("FashionMNIST/raw", "fashion-mnist", "FashionMNIST")}
HOW = {
    "MNIST": "put the four MNIST idx files (.gz or uncompressed) in <data_root>/MNIST/raw/ "
             "(the project's offline copy is ../shared/data/mnist/).",
    "FashionMNIST": "`apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist/), "
                    "or put the four idx files in <data_root>/FashionMNIST/raw/.",
    "CIFAR10": "put the python batches (data_batch_1..5, test_batch, batches.meta) in "
               "<data_root>/cifar-10-batches-py/ (the offline copy is ../shared/data/cifar10/).",
}
# Seconds a download may wait for a connection or for data before it fails (the socket timeout).
DOWNLOAD_TIMEOUT_S = 10.0
# md5s of the rebuilt CIFAR-10 batches in ../shared/data (their README); torchvision's are accepted too.
CIFAR_REBUILT_MD5 = {
    "data_batch_1": "38f7b56c0bbcfcaad729501a90a1007c", "data_batch_2": "89668c5a962544c67e1d56c7e86d23f5",
    "data_batch_3": "26bb94039c043c657563cff13c2c6d8c", "data_batch_4": "a59741215583212f39e1e17307fb875e",
    "data_batch_5": "6c3ad96f2d695cd9c6d874cac257b499", "test_batch": "169b3a0405fc2be2fa4d360d179db507",
}


def _has_raw(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_FILES)


def _check_raw(raw: Path, gz_folder: Optional[Path] = None) -> None:
    """The four files; errors name the .gz in ``gz_folder`` they were unpacked from, if any."""
    shown = (lambda p: f"{gz_folder / p.name}.gz (unpacked to {p})") if gz_folder else (lambda p: None)
    check_idx_pair(raw / IDX_FILES[0], raw / IDX_FILES[1], shown=shown)
    check_idx_pair(raw / IDX_FILES[2], raw / IDX_FILES[3], shown=shown)


def _gunzip(src: Path, dst: Path) -> None:
    # Per-process temporary name: DDP ranks on one machine unpack at the same time; each rename is whole.
    tmp = dst.with_name(f"{dst.name}.part-{os.getpid()}")
    try:
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        tmp.replace(dst)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        state = "truncated" if isinstance(error, EOFError) else "not a valid gzip file"
        raise DatasetFormatError(f"{src}: {state} ({error}); delete it and provide the original file "
                                 "again") from None
    finally:
        tmp.unlink(missing_ok=True)


def _find_idx(kind: str, roots: List[Path], target: Path) -> Optional[Path]:
    """A root under which torchvision finds <kind>/raw/<uncompressed idx files>, checked; None if none has them."""
    for root in roots:
        if _has_raw(root / kind / "raw"):
            _check_raw(root / kind / "raw")
            return root
    for root in roots:
        for sub in GZ_FOLDERS[kind]:
            folder = root / sub
            if all((folder / f"{name}.gz").is_file() for name in IDX_FILES):
                raw = target / kind / "raw"
                raw.mkdir(parents=True, exist_ok=True)
                for name in IDX_FILES:
                    _gunzip(folder / f"{name}.gz", raw / name)
                try:
                    _check_raw(raw, gz_folder=folder)
                except DatasetFormatError:  # not left where the next run would take it as good
                    for name in IDX_FILES:
                        (raw / name).unlink(missing_ok=True)
                    raise
                return target
    return None


def _prepare_idx(kind: str, data_root: Optional[str], download: bool) -> Path:
    """Returns a root under which torchvision finds <kind>/raw/<uncompressed idx files>, checked.

    The data roots first; then, if allowed, a download into the writable root; else one DatasetNotFoundError.
    """
    target = writable_root(data_root)
    roots = candidate_roots(data_root)
    root = _find_idx(kind, roots, target)
    if root is not None:
        return root
    tried = [r / s for r in roots for s in GZ_FOLDERS[kind]]
    allowed, off = download_allowed(download)
    if not allowed:
        raise not_found(kind, tried, HOW[kind], download_off=off, target=target / kind / "raw")
    error = _download(kind, target, done=lambda: _has_raw(target / kind / "raw"))
    root = None if error else _find_idx(kind, [target], target)
    if root is None:
        raise not_found(kind, tried, HOW[kind], target=target / kind / "raw",
                        download_error=error or "the download ended without the four files")
    return root


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """urllib (torchvision's downloads) has no timeout of its own: a dead network would hang forever."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """One process downloads at a time (DDP ranks on one machine); where locks fail, go on without one."""
    try:
        import fcntl
        handle = open(lock_path, "w")
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        handle.close()  # releases the lock


def _why(error: BaseException) -> str:
    if isinstance(error, URLError) and not isinstance(error.reason, str):
        error = error.reason  # e.g. gaierror "Name or service not known", TimeoutError
    if isinstance(error, (socket.timeout, TimeoutError)):
        return f"no answer within {DOWNLOAD_TIMEOUT_S:g} s (timed out)"
    text = str(error).strip() or "no message"
    return f"{type(error).__name__}: {text}"


def _download(kind: str, target: Path, done: Callable[[], bool]) -> Optional[str]:
    """Downloads ``kind`` with torchvision into ``target``: None when done, else why it failed (one line).

    The URLs, mirrors and md5s are torchvision's. Every socket times out after DOWNLOAD_TIMEOUT_S; a file
    is tried once per mirror, the next mirror only while less than that time has passed since the first,
    and the first file that no mirror gives ends the download: no network means an answer within seconds.
    """
    if kind == "CIFAR10":
        folder, cls = target, datasets.CIFAR10
        files = [(cls.filename, [cls.url], cls.tgz_md5)]
    else:
        cls = getattr(datasets, kind)
        folder = target / kind / "raw"
        files = [(name, [mirror + name for mirror in cls.mirrors], md5) for name, md5 in cls.resources]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {folder} ({error.strerror or error})"
    with _exclusive(target / f".{kind}.download.lock"), _socket_timeout(DOWNLOAD_TIMEOUT_S):
        if done():  # another process finished it while this one waited for the lock
            return None
        print(f"qlam: {kind} is in none of the data folders; downloading it with torchvision into {folder} "
              f"(task.download=false or {NO_DOWNLOAD_ENV}=1 turns this off)", file=sys.stderr, flush=True)
        for name, urls, md5 in files:
            path, failures = folder / name, []
            existed, start = path.exists(), time.monotonic()
            for url in urls:
                if failures and time.monotonic() - start > DOWNLOAD_TIMEOUT_S:
                    failures.append(f"{url}: not tried (the first mirror took too long)")
                    continue
                try:
                    tv_utils.download_and_extract_archive(url, download_root=str(folder), filename=name, md5=md5)
                    break
                except Exception as error:  # network, HTTP, md5 (RuntimeError) or unpacking errors alike
                    failures.append(f"{url}: {_why(error)}")
            else:
                if not existed:  # a partial file would pass for a (truncated) data set next time
                    path.unlink(missing_ok=True)
                return "; ".join(failures)
    return None


def _as_nhwc(images: Tensor) -> Tensor:
    return images if images.dim() == 4 else images.unsqueeze(-1)


def load_idx_dataset(kind: str, data_root: Optional[str] = None, download: bool = True) -> Tuple[Split, Split]:
    """MNIST or FashionMNIST through torchvision: ((train_x, train_y), (test_x, test_y)), x uint8 (N, 28, 28, 1)."""
    root = _prepare_idx(kind, data_root, download)
    cls = getattr(datasets, kind)
    out = []
    for train in (True, False):
        ds = cls(str(root), train=train, download=False)  # any download happened in _prepare_idx
        out.append((_as_nhwc(ds.data).contiguous(), ds.targets.long()))
    return out[0], out[1]


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 that also accepts the rebuilt batches' md5s (or, if asked, no md5 check)."""

    verify_md5 = True

    def _check_integrity(self) -> bool:
        for filename, md5 in self.train_list + self.test_list:
            path = str(Path(self.root) / self.base_folder / filename)
            if not self.verify_md5:
                ok = Path(path).is_file()
            else:
                ok = check_integrity(path, md5) or check_integrity(path, CIFAR_REBUILT_MD5.get(filename))
            if not ok:
                return False
        return True


def _cifar_roots(data_root: Optional[str]) -> List[Path]:
    return [p for r in candidate_roots(data_root) for p in (r, r / "cifar10", r / "cifar-10")]


def load_cifar10(data_root: Optional[str] = None, download: bool = True, verify_md5: bool = True) -> Tuple[Split, Split]:
    """CIFAR-10 through torchvision: x uint8 (N, 32, 32, 3)."""
    roots = _cifar_roots(data_root)
    root = next((r for r in roots if (r / "cifar-10-batches-py" / "test_batch").is_file()), None)
    if root is None:
        target = writable_root(data_root)
        tried = [r / "cifar-10-batches-py" for r in roots]
        allowed, off = download_allowed(download)
        if not allowed:
            raise not_found("CIFAR10", tried, HOW["CIFAR10"], download_off=off, target=target)
        done = (target / "cifar-10-batches-py" / "test_batch").is_file
        error = _download("CIFAR10", target, done=done)
        if error or not done():
            raise not_found("CIFAR10", tried, HOW["CIFAR10"], target=target,
                            download_error=error or "the archive held no cifar-10-batches-py/test_batch")
        root = target
    folder = root / "cifar-10-batches-py"
    check_cifar_folder(folder, [name for name, _ in _CIFAR10.train_list + _CIFAR10.test_list])
    attrs = {"verify_md5": verify_md5}
    if not verify_md5:
        attrs["meta"] = dict(_CIFAR10.meta, md5=None)
    cls = type("CIFAR10", (_CIFAR10,), attrs)
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)  # any download happened above
        except RuntimeError as error:
            raise RuntimeError(f"CIFAR10 in {root / 'cifar-10-batches-py'}: {error} (the files' md5s match neither "
                               "the original download nor the rebuilt copy; set task.verify_md5=false to skip "
                               "the check)") from None
        out.append((torch.from_numpy(ds.data).contiguous(), torch.tensor(ds.targets, dtype=torch.long)))
    return out[0], out[1]
