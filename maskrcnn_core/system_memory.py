"""How much memory the system can give this process now: the one reading of it that every memory decision
(the feature cache's budget, whether a large image may be decoded whole) makes. Standard library only."""

from __future__ import annotations

import os

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
