"""SHA-256 of a file, read in 1 MB blocks and remembered per (path, size, modification time).

The fine-tuning controller hashes a new checkpoint to register it, and the inference worker hashes the same
file again when it loads it; with the memo the second is free (a ResNet-50 checkpoint is 170 MB). A file
rewritten in place gets a new modification time, so it is hashed again.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike[str]) -> str:
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
