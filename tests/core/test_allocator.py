"""The allocator setting the Predictor makes on CPU: freed memory is reused, not faulted in again; and its
counterpart, freed memory given back when asked."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest
from memory_probe import rss_bytes

from maskrcnn_core.engine import allocator

# In a fresh interpreter (this test process's allocator may have been set already): malloc and touch
# 64 MB, free it, and count the page faults of doing it again. (Through libc itself: numpy and torch put
# large arrays on huge pages or align them, which would hide what malloc does.)
_PROBE = """
import ctypes, resource, sys
if sys.argv[1] == "reuse":
    from maskrcnn_core.engine.allocator import reuse_freed_memory
    assert reuse_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 * 2**20
def touch():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    return block
libc.free(touch())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_freed_memory_is_reused_without_page_faults() -> None:
    pages = 64 * 2**20 // 4096
    assert _faults("default") > pages // 2  # glibc maps a fresh 64 MB and faults every page in
    assert _faults("reuse") < pages // 50


@pytest.mark.skipif(
    allocator._glibc() is None or not os.path.exists("/proc/self/statm"), reason="glibc on Linux"
)
def test_freed_blocks_go_back_to_the_system() -> None:
    # blocks below glibc's mmap threshold come from its heap; freed, they stay counted against the process
    # while a block allocated after them keeps the heap from shrinking on its own
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block, count = 64 << 10, 1600  # 100 MB
    blocks = [libc.malloc(block) for _ in range(count)]
    for address in blocks:
        ctypes.memset(address, 1, block)
    keeper = libc.malloc(block)
    for address in blocks:
        libc.free(address)
    before = rss_bytes()

    allocator.return_freed_memory()

    given_back = before - rss_bytes()
    libc.free(keeper)
    assert given_back > 50 << 20
