"""Keep freed memory in the process for reuse (Linux, glibc), so training steps stop page-faulting.

glibc returns a large freed block to the operating system (an ``munmap``, or a trim of the heap's
top), and torch's CPU allocator does not cache blocks: so every training step maps its large
activations and gradients afresh, and touching them costs one page fault per 4 KiB. On the 2-core
machine of this project's benchmarks (``benchmarks/page_faults.py``: 7 child processes per mode,
``configs/smnist/cpu.yaml``'s model, batch 32, one thread) that was a median of 3,018 faults per step
(1,498-5,146 over the runs; ``resource.getrusage().ru_minflt``); with the settings below, 33 (0-490:
the heap still grows now and then as fragmentation shifts), and a step took 0.079 s instead of 0.086 s
(ranges 0.078-0.080 and 0.082-0.089). An earlier measurement had found the time saved within the
machine's run-to-run noise; the counts vary with the heap's layout from process to process. The
cost: the process keeps its peak heap instead of shrinking after it, which a training loop reaches
again every step anyway. (``LD_PRELOAD`` of jemalloc or tcmalloc, as
PyTorch's CPU tuning guide suggests, has the same effect; this needs no extra library.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): blocks above it are
# still mapped and unmapped each time.
_MMAP_THRESHOLD_MAX = 32 << 20
_TRIM_NEVER = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tells glibc's malloc to serve blocks up to 32 MiB from the heap and never trim it.

    Returns True when both settings took effect, False where they cannot (not Linux, not glibc,
    or mallopt refused); then nothing changed. Affects the whole process from now on; call it
    once, early (``qlam-train`` does unless ``train.keep_freed_memory=false``).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library found, or one without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_NEVER) == 1
