"""What this process holds in memory, read from Linux's /proc: for tests of memory given back."""

from __future__ import annotations

import os
from pathlib import Path


def resident_bytes(path: Path) -> int:
    """This process's resident bytes of its mappings of the file ``path``."""
    total, current = 0, None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                current = fields[5] if len(fields) > 5 else None
            elif fields[0] == "Rss:" and current == str(path):
                total += int(fields[1]) * 1024
    return total


def rss_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
