"""Where data sets are looked for, whether a missing one may be downloaded, and the error otherwise.

The writable data root is, in order: the config's ``task.data_root``, ``$QLAM_DATA``,
``~/.cache/qlam/data``. Read-only places searched as well: the project's
``../shared/data`` (next to the checkout) and ``/usr/share/datasets`` (Debian's
``dataset-fashion-mnist``). A data set in none of them is downloaded with torchvision
into the writable root unless ``task.download: false`` or ``$QLAM_NO_DOWNLOAD=1``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

# python/qlam/data/roots.py -> the checkout root (editable install from the source tree).
_CHECKOUT = Path(__file__).resolve().parents[3]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is in none of the places searched; the message lists them and the remedies."""


# Debian's dataset packages (dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/); always searched.
SYSTEM_ROOTS = (Path("/usr/share/datasets"),)


def writable_root(data_root: Optional[str]) -> Path:
    """The folder where qlam unpacks or downloads data sets."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get("QLAM_DATA"):
        return Path(os.environ["QLAM_DATA"]).expanduser()
    return Path.home() / ".cache" / "qlam" / "data"


def candidate_roots(data_root: Optional[str]) -> List[Path]:
    """Every folder searched, writable root first; duplicates removed, order kept."""
    roots = [writable_root(data_root)]
    if data_root is None:  # an explicit data_root means "only there" (plus the system copies)
        roots += [_CHECKOUT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    roots.extend(SYSTEM_ROOTS)
    seen, out = set(), []
    for root in roots:
        key = str(root.resolve()) if root.exists() else str(root)
        if key not in seen:
            seen.add(key)
            out.append(root)
    return out


# Set to 1 (or true/yes/on) to forbid every download, whatever the configs say (offline machines, CI).
NO_DOWNLOAD_ENV = "QLAM_NO_DOWNLOAD"


def download_allowed(requested: bool = True) -> Tuple[bool, str]:
    """Whether a missing data set may be downloaded, and if not, what turned it off (for the error)."""
    off = [] if requested else ["task.download=false"]
    value = os.environ.get(NO_DOWNLOAD_ENV, "").strip()
    if value.lower() not in ("", "0", "false", "no", "off"):
        off.append(f"${NO_DOWNLOAD_ENV}={value}")
    return not off, " and ".join(off)


def not_found(dataset: str, tried: List[Path], how: str, *, download_off: Optional[str] = None,
              download_error: Optional[str] = None, target: Optional[Path] = None) -> DatasetNotFoundError:
    """The one error for a missing data set: the places searched, what happened to the download, the remedies.

    ``download_off``: what turned downloading off (e.g. ``task.download=false``); ``download_error``: why the
    download that was tried into ``target`` failed.
    """
    places = "\n".join(f"  - {p}" for p in tried)
    if download_error is not None:
        download = (f"Downloading it with torchvision into {target} was tried and failed: {download_error}\n"
                    "(no internet access? then provide the files as below, or set task.download=false or "
                    f"{NO_DOWNLOAD_ENV}=1 to skip the attempt)\n")
    elif download_off is not None:
        undo = " and ".join((["set task.download=true"] if "task.download" in download_off else [])
                            + ([f"unset {NO_DOWNLOAD_ENV}"] if NO_DOWNLOAD_ENV in download_off else []))
        download = (f"Downloading is off ({download_off}); to let qlam download it with torchvision into "
                    f"{target or 'the writable data root'} on a machine with internet access, {undo}.\n")
    else:
        download = ""
    return DatasetNotFoundError(
        f"{dataset}: the data files were not found. Looked in:\n{places}\n{download}"
        f"How to provide them: {how}\n"
        "Or set task.data_root (or $QLAM_DATA) to a folder that has them."
    )
