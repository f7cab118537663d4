"""Downloading a missing data set: the data roots first, then torchvision, else one clear error, fast.

No test here touches the network: torchvision's download function is replaced (see conftest.py,
which also sets QLAM_NO_DOWNLOAD=1 for the session; ``allow_download`` lifts it for one test).
"""
import gzip
import shutil
import socket
import time
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest
import yaml
from torchvision import datasets
from torchvision.datasets import utils as tv_utils

from qlam.data import DatasetNotFoundError, build_task, download_allowed
from qlam.data import roots, sources
from qlam.train.cli import train_main
from qlam.train.config import TaskConfig, config_from_dict
from train_fixtures import IDX, tiny_config, write_cifar_batches, write_idx_dataset

NO_NETWORK = URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


def _task(root, **task):
    return config_from_dict({"task": {"data_root": str(root), "val_size": 8, "verify_md5": False, **task}}).task


class FakeDownloads:
    """Stands in for torchvision.datasets.utils.download_and_extract_archive: records each call, then fails
    (``error``) or serves the files torchvision would have fetched, from ``source``."""

    def __init__(self, error=None, source=None, delay=0.0):
        self.calls, self.error, self.source, self.delay = [], error, source, delay
        self.timeouts = []

    def __call__(self, url, download_root, extract_root=None, filename=None, md5=None, remove_finished=False):
        self.calls.append(url)
        self.timeouts.append(socket.getdefaulttimeout())
        time.sleep(self.delay)
        root = Path(download_root)
        if self.error is not None:
            (root / filename).write_bytes(b"partial")  # as torchvision leaves a broken-off download
            raise self.error
        if filename.endswith("tar.gz"):  # CIFAR-10: the archive unpacks to cifar-10-batches-py/
            write_cifar_batches(root, per_batch=12, n_test=12)
        else:  # an idx .gz next to its unpacked copy, as torchvision's extract_archive leaves them
            shutil.copy(self.source / filename, root / filename)
            with gzip.open(root / filename) as f:
                (root / filename[:-3]).write_bytes(f.read())
        (root / filename).touch()


@pytest.fixture
def fake(allow_download):
    # "missing" must mean missing: a system copy (apt's dataset-fashion-mnist) would be found first
    allow_download.setattr(roots, "SYSTEM_ROOTS", ())

    def install(**kwargs):
        downloads = FakeDownloads(**kwargs)
        allow_download.setattr(tv_utils, "download_and_extract_archive", downloads)
        return downloads
    return install


def test_downloading_is_on_by_default_and_off_by_key_or_environment(monkeypatch):
    assert TaskConfig().download is True
    monkeypatch.delenv("QLAM_NO_DOWNLOAD")
    assert download_allowed(True) == (True, "")
    assert download_allowed(False) == (False, "task.download=false")
    for value in ("1", "true", "yes"):
        monkeypatch.setenv("QLAM_NO_DOWNLOAD", value)
        assert download_allowed(True) == (False, f"$QLAM_NO_DOWNLOAD={value}")
    for value in ("", "0", "false"):
        monkeypatch.setenv("QLAM_NO_DOWNLOAD", value)
        assert download_allowed(True)[0]


# -- (1) found in a data root: nothing is downloaded --------------------------------------------------

def test_data_found_offline_is_never_downloaded(tmp_path, fake):
    downloads = fake(error=AssertionError("must not be called"))
    write_idx_dataset(tmp_path / "mnist", n_train=40, n_test=20)
    write_cifar_batches(tmp_path, per_batch=12, n_test=12)
    assert build_task(_task(tmp_path)).train_x.shape[0] == 32
    assert build_task(_task(tmp_path, name="scifar10")).train_x.shape[0] == 52
    assert downloads.calls == []


# -- a download that works: torchvision's own files and URLs ------------------------------------------

def test_a_missing_set_is_downloaded_into_the_writable_root(tmp_path, fake):
    source = write_idx_dataset(tmp_path / "server", n_train=40, n_test=20)
    downloads = fake(source=source)
    root = tmp_path / "data"
    task = build_task(_task(root))
    assert task.train_x.shape[0] == 32
    assert sorted(p.name for p in (root / "MNIST" / "raw").glob("*-ubyte")) == sorted(IDX)
    assert downloads.calls == [datasets.MNIST.mirrors[0] + name for name, _ in datasets.MNIST.resources]
    assert set(downloads.timeouts) == {sources.DOWNLOAD_TIMEOUT_S} and socket.getdefaulttimeout() is None
    build_task(_task(root, split_seed=1))  # found there now: no second download
    assert len(downloads.calls) == 4
    build_task(_task(tmp_path / "cifar", name="scifar10"))
    assert downloads.calls[-1] == datasets.CIFAR10.url


# -- (2) missing, and the download fails: one clear error, within seconds ------------------------------

@pytest.mark.parametrize("name, kind", [("smnist", "MNIST"), ("sfmnist", "FashionMNIST"), ("scifar10", "CIFAR10")])
def test_a_failed_download_gives_one_clear_error_fast(tmp_path, fake, name, kind):
    downloads = fake(error=NO_NETWORK)
    root = tmp_path / "empty"
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as info:
        build_task(_task(root, name=name))
    assert time.monotonic() - start < 5
    message = str(info.value)
    cls = getattr(datasets, kind)
    first = cls.url if kind == "CIFAR10" else cls.mirrors[0] + cls.resources[0][0]
    assert downloads.calls[0] == first and len(downloads.calls) == (1 if kind == "CIFAR10" else len(cls.mirrors))
    assert message.startswith(f"{kind}: the data files were not found. Looked in:")
    assert str(root) in message  # the places searched
    assert "Downloading it with torchvision into" in message and "was tried and failed" in message
    assert first in message and "Temporary failure in name resolution" in message  # what was tried, why it failed
    assert "How to provide them:" in message and "QLAM_NO_DOWNLOAD=1" in message
    assert not list(root.rglob("*.gz")) and not list(root.rglob("*.tar.gz"))  # no partial file left behind
    assert socket.getdefaulttimeout() is None  # the short timeout was only for the download


def test_a_stalled_first_mirror_is_not_followed_by_another_wait(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 0.05)
    downloads = fake(error=URLError(TimeoutError("timed out")), delay=0.1)
    with pytest.raises(DatasetNotFoundError) as info:
        build_task(_task(tmp_path / "empty"))
    assert len(downloads.calls) == 1 and downloads.timeouts == [0.05]
    assert "no answer within 0.05 s (timed out)" in str(info.value) and "not tried" in str(info.value)


def test_an_http_error_is_named(tmp_path, fake):
    fake(error=HTTPError(datasets.CIFAR10.url, 403, "Forbidden", {}, None))
    with pytest.raises(DatasetNotFoundError, match="HTTPError: HTTP Error 403: Forbidden"):
        build_task(_task(tmp_path / "empty", name="scifar10"))


def test_the_cli_reports_a_failed_download_in_one_message(tmp_path, fake, capsys):
    fake(error=NO_NETWORK)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path / "nothing", tmp_path / "runs", "lstm")))
    start = time.monotonic()
    assert train_main([str(path)]) == 2
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert err.count("qlam-train: error:") == 1 and "Traceback" not in err
    assert "was tried and failed" in err and str(tmp_path / "nothing") in err


# -- (3) downloading turned off: nothing is tried, and the error says how to turn it on ----------------

def test_qlam_no_download_means_no_attempt(tmp_path, monkeypatch):
    downloads = FakeDownloads(error=AssertionError("must not be called"))
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", downloads)
    assert download_allowed(True) == (False, "$QLAM_NO_DOWNLOAD=1")  # set by conftest.py for every test
    for name in ("smnist", "scifar10"):
        with pytest.raises(DatasetNotFoundError) as info:
            build_task(_task(tmp_path / "empty", name=name))
        message = str(info.value)
        assert "Downloading is off ($QLAM_NO_DOWNLOAD=1)" in message and "unset QLAM_NO_DOWNLOAD" in message
        assert "was tried" not in message
    assert downloads.calls == []


def test_task_download_false_means_no_attempt(tmp_path, fake):
    downloads = fake(error=AssertionError("must not be called"))
    with pytest.raises(DatasetNotFoundError) as info:
        build_task(_task(tmp_path / "empty", download=False))
    message = str(info.value)
    assert "Downloading is off (task.download=false)" in message and "set task.download=true" in message
    assert str(tmp_path / "empty") in message and downloads.calls == []


def test_an_unwritable_root_is_reported_as_the_reason(tmp_path, fake):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    downloads = fake(error=AssertionError("must not be called"))
    with pytest.raises(DatasetNotFoundError, match="was tried and failed: cannot create"):
        build_task(_task(blocker))
    assert downloads.calls == []
