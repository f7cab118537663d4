"""Session-wide test settings.

The tests never download data sets: CI and the test machines have no network, and a test that
reached for it would wait or fail for reasons that are not qlam's. ``QLAM_NO_DOWNLOAD=1`` is set
for the whole session (subprocesses inherit it), so a missing data set fails at once with
qlam's error. A test that exercises the download path opts in with the ``allow_download``
fixture, and replaces torchvision's download function itself.
"""
import os

import pytest

os.environ["QLAM_NO_DOWNLOAD"] = "1"


class NetworkUsedInTests(BaseException):
    """Not an Exception: qlam's download error handling must not turn it into a "download failed" message."""


@pytest.fixture
def allow_download(monkeypatch):
    """Lifts QLAM_NO_DOWNLOAD for one test; torchvision's downloader still refuses unless the test patches it."""
    from torchvision.datasets import utils

    def refuse(url, *args, **kwargs):
        raise NetworkUsedInTests(f"a test tried to download {url}; monkeypatch "
                                 "torchvision.datasets.utils.download_and_extract_archive")

    monkeypatch.delenv("QLAM_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(utils, "download_and_extract_archive", refuse)
    monkeypatch.setattr(utils, "download_url", refuse)
    return monkeypatch
