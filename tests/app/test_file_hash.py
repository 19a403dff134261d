"""``file_sha256``: hashlib's digest of the file, remembered until the file changes."""

from __future__ import annotations

import hashlib
import os

from app.project.file_hash import file_sha256


def test_digest_matches_hashlib_and_follows_a_rewrite(tmp_path):
    path = tmp_path / "model.pt"
    first = os.urandom(3 << 20)  # three 1 MB blocks
    path.write_bytes(first)
    assert file_sha256(path) == hashlib.sha256(first).hexdigest()
    assert file_sha256(str(path)) == file_sha256(tmp_path / "." / "model.pt")

    second = os.urandom(3 << 20)  # same size: only the modification time tells them apart
    stat = path.stat()
    path.write_bytes(second)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(path) == hashlib.sha256(second).hexdigest()
