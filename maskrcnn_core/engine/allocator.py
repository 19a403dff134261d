"""Keep freed CPU memory in the process for reuse, instead of glibc's default of giving it back.

A Mask R-CNN forward on CPU allocates and frees hundreds of activation buffers of 1-60 MB. glibc serves
each buffer above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it on ``free``, and
trims the heap's top after each large ``free``, so every layer page-faults its output in again: on a
12-megapixel photo that was ~800,000 page faults and ~2 s of kernel time per image on 2 cores, a fifth of
the wall time (``bench/bench_predict_cpu.py``). With mmap off for ``malloc`` and no trimming, a freed buffer
goes back to the heap and the next layer reuses its pages.

The cost: the process keeps the memory of its largest inference after it ends (it is not returned to the
system until exit), which an application that segments image after image would page in again anyway.
The setting is process-wide and glibc-only; elsewhere nothing changes. :func:`return_freed_memory` is its
counterpart, for a caller that knows when a burst of large buffers has just been freed.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from functools import cache

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1

_applied = False


@cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (whose malloc these settings are for)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep and reuse freed memory; ``True`` when it applies (Linux with glibc).

    Idempotent. Once applied it stays for the life of the process.
    """
    global _applied
    if _applied:
        return True
    mallopt = getattr(_glibc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    return _applied


def return_freed_memory() -> None:
    """Give the memory this process has freed back to the system now (glibc's ``malloc_trim``).

    With freed memory kept for reuse, a burst of large buffers (a network's, sized for the largest image it
    ran) stays counted against the process once freed, and what is allocated next does not always fit in
    its holes, so the process grows. No-op where the C library is not glibc."""
    trim = getattr(_glibc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        trim(0)
