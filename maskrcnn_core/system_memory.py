"""How much memory the system can give this process now: the one reading of it that every memory decision
(the feature cache's budget, whether a large image may be decoded whole) makes; and giving the system back
the pages of files this process maps but no longer reads. Standard library only."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from functools import cache

# when the system says nothing (no /proc, no sysconf): assume a small laptop rather than refuse
_FALLBACK_AVAILABLE = 4 << 30


def available_memory() -> int:
    """Bytes of memory available to new allocations without swapping (Linux's ``MemAvailable``; elsewhere
    the free physical pages), or a 4 GB guess when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_AVAILABLE


def drop_file_pages(paths: Iterable[os.PathLike | str]) -> None:
    """Let the system take back the pages of ``paths`` that this process has mapped read-only.

    A read-only file mapping's pages are copies of the file: dropped, they are read from it again on the
    next access, so nothing changes for whoever mapped them except that they stop counting against this
    process until then. Mappings that can be written are left alone. No-op where there is no
    ``/proc/self/maps`` or ``madvise``."""
    wanted = {os.fspath(path) for path in paths}
    madvise = _madvise()
    if not wanted or madvise is None:
        return
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        # address perms offset dev inode path
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or fields[5].rstrip("\n") not in wanted:
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        madvise(start, end - start, _MADV_DONTNEED)


# Linux's MADV_DONTNEED: the kernel drops the pages; a file mapping's come back from the file on access
_MADV_DONTNEED = 4


@cache
def _madvise() -> Callable[..., int] | None:
    """Linux's ``madvise``, where there is a ``/proc/self/maps`` to find the mappings in."""
    if not os.path.exists("/proc/self/maps"):
        return None
    try:
        madvise = ctypes.CDLL(None).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
