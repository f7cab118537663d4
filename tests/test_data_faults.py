"""Damaged or foreign data files are reported as such, naming the file: never a cryptic error or a short set."""
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from qlam.data import DatasetFormatError, build_task
from qlam.data.checks import check_cifar_folder
from qlam.train.cli import train_main
from qlam.train.config import config_from_dict
from train_fixtures import IDX, tiny_config, write_cifar_batches, write_idx_dataset

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar-10-batches-py"
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _task(root, **task):
    return config_from_dict({"task": {"data_root": str(root), "val_size": 8, "verify_md5": False, **task}}).task


def _refused(root, match, **task):
    with pytest.raises(DatasetFormatError, match=match) as info:
        build_task(_task(root, **task))
    return str(info.value)


def _rewrite_gz(path, transform):
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(transform(data))


# -- MNIST-format IDX files ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", IDX)
@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_a_truncated_gz_is_named(tmp_path, name, keep):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    data = (folder / f"{name}.gz").read_bytes()
    (folder / f"{name}.gz").write_bytes(data[:int(len(data) * keep)])
    message = _refused(tmp_path, "truncated|not a valid gzip")
    assert str(folder / f"{name}.gz") in message
    assert not list((tmp_path / "MNIST" / "raw").glob("*.part*"))  # no half-unpacked file left behind


def test_a_gz_that_is_not_gzip_is_named(tmp_path):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    (folder / f"{IDX[1]}.gz").write_bytes(b"<html>404 Not Found</html>")
    assert str(folder / f"{IDX[1]}.gz") in _refused(tmp_path, "not a valid gzip file")


@pytest.mark.parametrize("case, transform, words", [
    ("wrong magic", lambda d: struct.pack(">I", 0x0801) + d[4:], ["magic number 0x00000801", "expected 0x00000803"]),
    ("a labels file", lambda d: struct.pack(">II", 0x0801, 40) + bytes(40), ["magic number 0x00000801"]),
    ("empty", lambda d: b"", ["an empty file"]),
    ("short data", lambda d: d[:-100], ["truncated", "needs"]),
    ("extra data", lambda d: d + bytes(5), ["longer than its header says"]),
    ("wrong image size", lambda d: struct.pack(">IIII", 0x0803, 40, 32, 32) + d[16:], ["expected (N, 28, 28)"]),
])
def test_a_wrong_idx_images_file_is_named(tmp_path, case, transform, words):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    _rewrite_gz(folder / f"{IDX[0]}.gz", transform)
    message = _refused(tmp_path, "train-images-idx3-ubyte")
    for word in words:
        assert word in message, (word, message)
    assert str(folder) in message  # the .gz the user has to replace, not only our unpacked copy


def test_wrong_labels_are_named(tmp_path):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    _rewrite_gz(folder / f"{IDX[3]}.gz", lambda d: d[:-1] + bytes([200]))
    assert "label 200 is outside 0..9" in _refused(tmp_path, "t10k-labels-idx1-ubyte")
    folder = write_idx_dataset(tmp_path / "b" / "mnist", n_train=40, n_test=20)
    _rewrite_gz(folder / f"{IDX[1]}.gz", lambda d: struct.pack(">II", 0x0801, 39) + d[8:-1])
    assert "40 images but" in _refused(tmp_path / "b", "39 labels")


def test_a_truncated_unpacked_idx_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    folder = write_idx_dataset(tmp_path / "gz", n_train=40, n_test=20)
    raw.mkdir(parents=True)
    for name in IDX:
        with gzip.open(folder / f"{name}.gz") as f:
            (raw / name).write_bytes(f.read())
    (raw / IDX[2]).write_bytes((raw / IDX[2]).read_bytes()[:3000])
    assert "truncated: 3000 bytes" in _refused(tmp_path, str(raw / IDX[2]))


# -- CIFAR-10 python batches --------------------------------------------------------------------------

@pytest.fixture
def cifar(tmp_path):
    return write_cifar_batches(tmp_path, per_batch=12, n_test=12)


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_a_truncated_cifar_batch_is_named(tmp_path, cifar, keep):
    data = (cifar / "data_batch_3").read_bytes()
    (cifar / "data_batch_3").write_bytes(data[:int(len(data) * keep)])
    message = _refused(tmp_path, "data_batch_3: not a readable CIFAR-10 python batch", name="scifar10")
    assert "truncated" in message or "ran out of input" in message.lower()


@pytest.mark.parametrize("entry, words", [
    ([1, 2, 3], ["expected a dict with 'data' and 'labels', got list"]),
    ({"data": np.zeros((12, 3072), np.uint8)}, ["got a dict with keys ['data']"]),
    ({"data": np.zeros((12, 3072), np.uint8), "fine_labels": [0] * 12}, ["'fine_labels'"]),  # CIFAR-100
    ({"data": np.zeros((12, 1024), np.uint8), "labels": [0] * 12}, ["shape (N, 3072)", "(12, 1024)"]),
    ({"data": np.zeros((12, 3072), np.float32), "labels": [0] * 12}, ["uint8", "float32"]),
    ({"data": np.zeros((12, 3072), np.uint8), "labels": [0] * 11}, ["12 images but 11 labels"]),
    ({"data": np.zeros((12, 3072), np.uint8), "labels": [10] * 12}, ["labels outside 0..9"]),
])
def test_a_batch_that_is_not_a_cifar_batch_is_named(tmp_path, cifar, entry, words):
    (cifar / "test_batch").write_bytes(pickle.dumps(entry))
    message = _refused(tmp_path, "test_batch", name="scifar10")
    for word in words:
        assert word in message, (word, message)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["data_batch_1", "batches.meta"])
def test_a_batch_that_would_run_code_is_refused_unread(tmp_path, cifar, name):
    marker = tmp_path / "marker"
    (cifar / name).write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [], "label_names": []}))
    message = _refused(tmp_path, f"{name}: not a readable", name="scifar10")
    assert "system, which a CIFAR-10 batch never does (unpickling it could run code)" in message
    assert not marker.exists()
    pickle.loads((cifar / name).read_bytes())  # the control: a plain unpickle does run it
    assert marker.exists()


def test_missing_and_bad_metadata_are_named(tmp_path, cifar):
    (cifar / "batches.meta").write_bytes(pickle.dumps({"num_vis": 3072}))
    _refused(tmp_path, "batches.meta: not CIFAR-10 metadata", name="scifar10")
    (cifar / "data_batch_5").unlink()
    _refused(tmp_path, "incomplete CIFAR-10 folder, missing data_batch_5", name="scifar10")


def test_the_cli_reports_a_data_fault_without_traceback(tmp_path, capsys):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    (folder / f"{IDX[0]}.gz").write_bytes((folder / f"{IDX[0]}.gz").read_bytes()[:200])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, tmp_path / "runs", "lstm")))
    assert train_main([str(path)]) == 2
    err = capsys.readouterr().err
    assert f"qlam-train: error: {folder / IDX[0]}.gz: truncated" in err and "Traceback" not in err


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="no offline CIFAR-10 copy next to the checkout")
def test_the_real_cifar_batches_pass_the_checks():
    check_cifar_folder(SHARED_CIFAR, CIFAR_BATCHES)  # Python 2 pickles of the original layout


UNPACK = """
import os, sys, time
from pathlib import Path
from qlam.data.sources import _prepare_idx
ready = Path(sys.argv[1])
(ready / f"ready-{os.getpid()}").touch()
while len(list(ready.glob("ready-*"))) < 2:  # start together, as DDP ranks do after init_process_group
    time.sleep(0.001)
for root in sys.argv[2:]:
    _prepare_idx("MNIST", root, False)
"""


def test_two_processes_unpacking_the_same_files_at_once(tmp_path):
    """DDP ranks on one machine unpack a fresh data root together (before: one shared .part file; with this
    start barrier the old code failed 3 times in 3 with FileNotFoundError)."""
    import subprocess
    import sys
    src = write_idx_dataset(tmp_path / "src", n_train=3000, n_test=500)
    roots = []
    for i in range(6):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "mnist").symlink_to(src)
        roots.append(str(tmp_path / f"r{i}"))
    procs = [subprocess.Popen([sys.executable, "-c", UNPACK, str(tmp_path), *roots], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    for root in roots:
        raw = Path(root) / "MNIST" / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(IDX)  # whole files only, no .part left
        assert build_task(_task(root)).train_x.shape[0] == 3000 - 8
