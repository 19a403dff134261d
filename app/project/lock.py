"""An OS file lock that says "this project is open": held for as long as a window (or CLI command) has it.

Why an OS lock rather than a row in the database: the kernel drops it when the process dies, even by
``kill -9``, so a crash never leaves a stale lock that the user has to delete by hand. ``flock`` (POSIX)
and ``msvcrt.locking`` (Windows) are both per open file, so a second ``ProjectLock`` on the same file is
refused even inside one process.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

# sys.platform, not os.name: type checkers follow it and check only the branch of the platform they run for.
if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl


class ProjectLockedError(ValueError):
    """The project is already open in another window or process."""


class ProjectLock:
    """An exclusive, non-blocking lock on ``path``; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(fd)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ProjectLockedError(
                f"this project is already open{holder}; close it there first (lock file: {self.path})"
            ) from None
        # Who holds it, so that the refusal above can name the other process.
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _unlock(fd)
        os.close(fd)


def _try_lock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").split()
    except OSError:
        return ""
    if len(text) >= 2:
        return f" by process {text[0]} on {text[1]}"
    return ""
