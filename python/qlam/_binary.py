"""What the compiled extension's file itself declares, read from its ELF headers.

Two facts a build can get wrong without any test noticing on a CPU machine:
- which GPU architectures it carries: native code (``sm_XX`` cubins) and PTX
  (``compute_XX``, JIT-compiled by the driver for newer GPUs), from the
  ``.nv_fatbin`` section;
- which shared libraries it needs (``DT_NEEDED``): it must use the shared
  libstdc++ that torch uses, never a static copy (see CMakeLists.txt).

Plain Python (struct), so it works where cuobjdump and readelf are missing.
Linux x86-64/aarch64 ELF64 little-endian only.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List, Tuple

_FATBIN_MAGIC = 0xBA55ED50
_FATBIN_PTX, _FATBIN_CUBIN = 1, 2


def _sections(data: bytes) -> Tuple[Dict[str, Tuple[int, int, int, int]], list]:
    """name -> (type, offset, size, link) for every section of an ELF64 file, and the raw headers."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]

    def name(offset: int) -> str:
        start = names_at + offset
        return data[start:data.index(b"\0", start)].decode()

    return {name(h[0]): (h[1], h[4], h[5], h[6]) for h in headers}, headers


def cuda_targets(path: str | Path) -> Dict[str, List[str]]:
    """The GPU code embedded in a shared library: {'sass': ['sm_80', ...], 'ptx': ['compute_120', ...]}."""
    data = Path(path).read_bytes()
    sections, _ = _sections(data)
    found = {"sass": set(), "ptx": set()}
    if ".nv_fatbin" not in sections:
        return {"sass": [], "ptx": []}
    _, start, size, _ = sections[".nv_fatbin"]
    pos, end = start, start + size
    while pos + 16 <= end:
        magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != _FATBIN_MAGIC:  # fat binaries are 8-byte aligned within the section
            pos += 8
            continue
        entry, body_end = pos + header_size, pos + header_size + body_size
        while entry < body_end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch, = struct.unpack_from("<I", data, entry + 28)
            if kind == _FATBIN_PTX:
                found["ptx"].add(f"compute_{arch}")
            elif kind == _FATBIN_CUBIN:
                found["sass"].add(f"sm_{arch}")
            entry += entry_header + payload
        pos = body_end
    order = lambda name: int(name.split("_")[1])  # noqa: E731
    return {kind: sorted(names, key=order) for kind, names in found.items()}


def needed_libraries(path: str | Path) -> List[str]:
    """The DT_NEEDED entries of a shared library (the libraries the loader must bring)."""
    data = Path(path).read_bytes()
    sections, headers = _sections(data)
    if ".dynamic" not in sections:
        return []
    _, start, size, link = sections[".dynamic"]
    strings_at = headers[link][4]
    needed = []
    for pos in range(start, start + size, 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:  # DT_NULL
            break
        if tag == 1:  # DT_NEEDED
            at = strings_at + value
            needed.append(data[at:data.index(b"\0", at)].decode())
    return needed
