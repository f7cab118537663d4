"""Where data sets are looked for, and the error when none of the places has them.

The writable data root is, in order: the config's ``task.data_root``, ``$QLAM_DATA``,
``~/.cache/qlam/data``. Read-only places searched as well: the project's
``../shared/data`` (next to the checkout) and ``/usr/share/datasets`` (Debian's
``dataset-fashion-mnist``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

# python/qlam/data/roots.py -> the checkout root (editable install from the source tree).
_CHECKOUT = Path(__file__).resolve().parents[3]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is in none of the places searched; the message lists them and the remedies."""


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
    roots.append(Path("/usr/share/datasets"))
    seen, out = set(), []
    for root in roots:
        key = str(root.resolve()) if root.exists() else str(root)
        if key not in seen:
            seen.add(key)
            out.append(root)
    return out


def not_found(dataset: str, tried: List[Path], how: str) -> DatasetNotFoundError:
    places = "\n".join(f"  - {p}" for p in tried)
    return DatasetNotFoundError(
        f"{dataset}: the data files were not found. Looked in:\n{places}\n"
        f"How to provide them: {how}\n"
        "Or set task.data_root (or $QLAM_DATA) to a folder that has them, "
        "or set task.download=true on a machine with internet access."
    )
