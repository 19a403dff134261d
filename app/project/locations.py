"""Where things live on disk: the project next to the images, or a user-chosen place for read-only folders.

A project normally lives in ``FOLDER/.maskrcnn-studio/``. When the folder is read-only the user picks
another directory; that choice is remembered in ``<user data dir>/project_locations.json`` so that opening
the same folder again finds its project. Qt-free, so the command line uses the same rules as the window.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

# the core's CLIs refuse to write into a project folder, so the core owns its name
from maskrcnn_core.paths import PROJECT_DIR_NAME as PROJECT_DIR_NAME
from maskrcnn_core.paths import read_json

_LOCATIONS_FILE = "project_locations.json"


class ProjectLocationError(ValueError):
    """The project cannot be created where it was asked for (read-only folder, missing folder)."""

    def __init__(self, message: str, suggested_dir: Path | None = None) -> None:
        super().__init__(message)
        self.suggested_dir = suggested_dir


def user_data_dir() -> Path:
    """The per-user directory for the app's own files (``$XDG_DATA_HOME/maskrcnn-studio`` on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "maskrcnn-studio"


def user_cache_dir() -> Path:
    """The per-user cache directory (``$XDG_CACHE_HOME/maskrcnn-studio`` on Linux), home of the demo."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "maskrcnn-studio"


def suggested_project_dir(images_dir: Path) -> Path:
    """A per-folder directory under the user data dir, offered when the folder itself is read-only."""
    images_dir = images_dir.resolve()
    digest = hashlib.sha1(str(images_dir).encode()).hexdigest()[:10]
    return user_data_dir() / "projects" / f"{images_dir.name or 'root'}-{digest}"


def remembered_project_dir(images_dir: Path) -> Path | None:
    """The project directory the user chose earlier for ``images_dir``, if any."""
    return _read_locations().get(str(images_dir.resolve()))


def remember_project_dir(images_dir: Path, project_dir: Path) -> None:
    """Record the user's choice of ``project_dir`` for ``images_dir`` (atomic replace of the JSON file)."""
    locations = _read_locations()
    locations[str(images_dir.resolve())] = project_dir.resolve()
    from maskrcnn_core.data.coco import write_json_atomic  # numpy/cv2 only, no torch

    write_json_atomic(user_data_dir() / _LOCATIONS_FILE, {k: str(v) for k, v in sorted(locations.items())})


def resolve_project_dir(images_dir: Path, project_dir: Path | None = None) -> Path:
    """The directory that holds (or will hold) the project of ``images_dir``, created if needed.

    Order: an explicit ``project_dir``; the one remembered for this folder; ``images_dir/.maskrcnn-studio``.
    Raises :class:`ProjectLocationError` (with ``suggested_dir`` set) when that directory cannot be written.
    """
    if not images_dir.is_dir():
        raise ProjectLocationError(f"{images_dir} is not a folder")
    chosen = project_dir or remembered_project_dir(images_dir) or images_dir / PROJECT_DIR_NAME
    try:
        chosen.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=chosen, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise ProjectLocationError(
            f"cannot keep the project in {chosen} ({exc.strerror or exc}); the folder is probably read-only. "
            "Choose another place for the project",
            suggested_dir=None if project_dir else suggested_project_dir(images_dir),
        ) from None
    return chosen


def _read_locations() -> dict[str, Path]:
    path = user_data_dir() / _LOCATIONS_FILE
    try:
        raw = read_json(path)
    except ValueError:
        return {}
    return {str(k): Path(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
