"""What makes a path fit to read from or write to, said in one line naming the path.

Only regular files are ever opened for reading: a named pipe blocks ``open`` forever and a device never
ends. Outputs are checked before any work starts, so a bad ``--out`` costs nothing, and no output may
land inside a project folder, whose database a plain file would replace, except in its runs folder, where
the app's own fine-tuning runs write their checkpoints and logs.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

#: The hidden folder beside the images that holds a project's database and models.
PROJECT_DIR_NAME = ".maskrcnn-studio"
#: The folder inside a project folder that holds its fine-tuning runs (one folder a run).
PROJECT_RUNS_DIR = "runs"


class OutputPathError(ValueError):
    """An output path that cannot or must not be written."""


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable, non-empty regular file (``None`` when it is one).

    Reads ``stat`` only, so a named pipe or a device is diagnosed without being opened.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a part of the path is a file, not a folder)"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, socket or device)"
    if info.st_size == 0:
        return "the file is empty (0 bytes)"
    return None


def is_regular_file(path: str | os.PathLike) -> bool:
    """``path`` is a regular file (following symlinks); never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike, *, flag: str = "--out", project_dir: str | os.PathLike | None = None
) -> Path:
    """Refuse, before any work, an output file that cannot be written or would land in a project folder
    (``project_dir``, wherever it lives, or any folder named :data:`PROJECT_DIR_NAME`)."""
    path = Path(path)
    _refuse_project_folder(path, flag, project_dir)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{flag} {path}: is not a regular file")
    _check_parent_writable(path.parent, path, flag)
    return path


def check_output_dir(
    path: str | os.PathLike, *, flag: str = "--out", project_dir: str | os.PathLike | None = None
) -> Path:
    """Refuse, before any work, an output folder that cannot be created or would land in a project folder
    (as :func:`check_output_file` says)."""
    path = Path(path)
    _refuse_project_folder(path, flag, project_dir)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file, not a folder")
    _check_parent_writable(path, path, flag)
    return path


def _refuse_project_folder(path: Path, flag: str, project_dir: str | os.PathLike | None) -> None:
    """Refuse ``path`` inside ``project_dir`` or inside any folder named :data:`PROJECT_DIR_NAME`, except
    inside a run's folder under its :data:`PROJECT_RUNS_DIR`."""
    resolved = path.resolve()
    parts = resolved.parts
    roots = [Path(project_dir).resolve()] if project_dir is not None else []
    if PROJECT_DIR_NAME in parts:
        roots.append(Path(*parts[: parts.index(PROJECT_DIR_NAME) + 1]))
    for root in roots:
        if not resolved.is_relative_to(root):
            continue
        inside = resolved.relative_to(root).parts
        if len(inside) < 2 or inside[0] != PROJECT_RUNS_DIR:  # a run's own folder, or a file in one, is fine
            raise OutputPathError(
                f"{flag} {path}: is inside the project folder {root}, which holds the project's database; "
                "write somewhere else"
            )


def _check_parent_writable(folder: Path, path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder (so ``mkdir -p`` can work)."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputPathError(f"{flag} {path}: {existing} is a file, so nothing can be written under it")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: the folder {existing} is not writable")


class JsonFileError(ValueError):
    """A JSON file that cannot be read: not a regular file, unreadable, not JSON, or nested too deeply."""


def read_json(path: str | os.PathLike) -> Any:
    """The parsed contents of the JSON file ``path``; every failure is one :class:`JsonFileError` line."""
    reason = unreadable_reason(path)
    if reason is not None:  # checked before open: a named pipe would block the read forever
        raise JsonFileError(f"{path}: {reason}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise JsonFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return json.loads(data)
    except RecursionError:
        raise JsonFileError(f"{path}: the JSON is nested too deeply to read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JsonFileError(f"{path}: not a JSON file ({exc})") from None


def one_line_error(exc: BaseException) -> str:
    """An expected failure as the one line a command prints: an ``OSError`` as ``file: reason``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def user_cache_dir() -> Path:
    """The engine's cache folder (compiled models): ``$MASKRCNN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/maskrcnn-studio``, else ``~/.cache/maskrcnn-studio``. It may not exist yet."""
    explicit = os.environ.get("MASKRCNN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "maskrcnn-studio"
