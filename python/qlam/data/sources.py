"""Reads the image data sets with torchvision's classes, from the original file formats.

Each loader returns uint8 images (N, H, W, C) and int64 labels for train and test.
MNIST / Fashion-MNIST: torchvision reads uncompressed idx files from
``<root>/<Class>/raw``; gzipped copies found elsewhere are unpacked there first.
CIFAR-10: the python batches in ``<root>/cifar-10-batches-py``, checked against
the md5s of the original download or of the rebuilt copy (../shared/data/README.md).
Every file is checked first (``checks``): a truncated or foreign file stops with its name.
"""
from __future__ import annotations

import gzip
import os
import shutil
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from .checks import DatasetFormatError, check_cifar_folder, check_idx_pair
from .roots import candidate_roots, not_found, writable_root

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


def _prepare_idx(kind: str, data_root: Optional[str], download: bool) -> Path:
    """Returns a root under which torchvision finds <kind>/raw/<uncompressed idx files>, checked."""
    target = writable_root(data_root)
    roots = candidate_roots(data_root)
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
    if download:
        return target
    raise not_found(kind, [r / s for r in roots for s in GZ_FOLDERS[kind]], HOW[kind])


def _as_nhwc(images: Tensor) -> Tensor:
    return images if images.dim() == 4 else images.unsqueeze(-1)


def load_idx_dataset(kind: str, data_root: Optional[str] = None, download: bool = False) -> Tuple[Split, Split]:
    """MNIST or FashionMNIST through torchvision: ((train_x, train_y), (test_x, test_y)), x uint8 (N, 28, 28, 1)."""
    root = _prepare_idx(kind, data_root, download)
    cls = getattr(datasets, kind)
    out = []
    for train in (True, False):
        ds = cls(str(root), train=train, download=download)
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


def load_cifar10(data_root: Optional[str] = None, download: bool = False, verify_md5: bool = True) -> Tuple[Split, Split]:
    """CIFAR-10 through torchvision: x uint8 (N, 32, 32, 3)."""
    roots = _cifar_roots(data_root)
    root = next((r for r in roots if (r / "cifar-10-batches-py" / "test_batch").is_file()), None)
    if root is None:
        if not download:
            raise not_found("CIFAR10", [r / "cifar-10-batches-py" for r in roots], HOW["CIFAR10"])
        root = writable_root(data_root)
    folder = root / "cifar-10-batches-py"
    if (folder / "test_batch").is_file():  # else torchvision downloads (download=true) and checks the md5s
        check_cifar_folder(folder, [name for name, _ in _CIFAR10.train_list + _CIFAR10.test_list])
    attrs = {"verify_md5": verify_md5}
    if not verify_md5:
        attrs["meta"] = dict(_CIFAR10.meta, md5=None)
    cls = type("CIFAR10", (_CIFAR10,), attrs)
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as error:
            raise RuntimeError(f"CIFAR10 in {root / 'cifar-10-batches-py'}: {error} (the files' md5s match neither "
                               "the original download nor the rebuilt copy; set task.verify_md5=false to skip "
                               "the check)") from None
        out.append((torch.from_numpy(ds.data).contiguous(), torch.tensor(ds.targets, dtype=torch.long)))
    return out[0], out[1]
