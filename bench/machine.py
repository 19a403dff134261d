"""What the benchmarks print about the machine they ran on (BENCHMARKS.md names it with each figure)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """CPU, logical CPUs and operating system, in one line."""
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"
