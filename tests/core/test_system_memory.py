"""Giving the system back the pages of a file this process maps read-only, and only those."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
from memory_probe import resident_bytes

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
