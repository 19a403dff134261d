"""Giving memory back to the system: a read-only file mapping's pages, and blocks glibc keeps once freed."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest
from memory_probe import resident_bytes, rss_bytes

from maskrcnn_core import system_memory

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's /proc")


def test_a_read_only_mapping_gives_its_pages_back_and_reads_the_same_after(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = os.urandom(8 << 20)
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[:] == data  # every page read
        assert resident_bytes(path) >= 7 << 20

        system_memory.drop_file_pages([path])

        assert resident_bytes(path) == 0
        assert mapped[:] == data  # read from the file again
        assert resident_bytes(path) >= 7 << 20


def test_a_writable_mapping_keeps_what_was_written_to_it(tmp_path: Path) -> None:
    # a private writable mapping's written pages exist nowhere else: dropping them would lose the writes
    path = tmp_path / "scratch.bin"
    path.write_bytes(bytes(1 << 20))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        mapped[:5] = b"kept!"
        system_memory.drop_file_pages([path])
        assert mapped[:5] == b"kept!"
    assert path.read_bytes()[:5] == bytes(5)  # a private mapping: the file itself is unchanged


def test_only_the_files_named_are_dropped(tmp_path: Path) -> None:
    named, other = tmp_path / "named.bin", tmp_path / "other.bin"
    for path in (named, other):
        path.write_bytes(os.urandom(2 << 20))
    with open(named, "rb") as a, open(other, "rb") as b:
        with (
            mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ) as ma,
            mmap.mmap(b.fileno(), 0, access=mmap.ACCESS_READ) as mb,
        ):
            _ = ma[:], mb[:]
            system_memory.drop_file_pages([named, tmp_path / "not-mapped.bin"])
            assert resident_bytes(named) == 0
            assert resident_bytes(other) >= 1 << 20


@pytest.mark.skipif(system_memory._malloc_trim() is None, reason="glibc's malloc_trim")
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

    system_memory.return_freed_memory()

    given_back = before - rss_bytes()
    libc.free(keeper)
    assert given_back > 50 << 20
