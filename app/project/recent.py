"""The recently opened folders (File ▸ Recent folders), kept in the user data dir as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from app.project.locations import user_data_dir

MAX_RECENT = 10


def _path() -> Path:
    return user_data_dir() / "recent_folders.json"


def recent_folders() -> list[Path]:
    """Most recent first; folders that no longer exist are left out."""
    try:
        raw = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(p) for p in raw if isinstance(p, str) and Path(p).is_dir()] if isinstance(raw, list) else []


def add_recent_folder(folder: Path) -> None:
    from maskrcnn_core.data.coco import write_json_atomic  # numpy/cv2 only, no torch

    folder = folder.resolve()
    folders = [folder] + [f for f in recent_folders() if f != folder]
    write_json_atomic(_path(), [str(f) for f in folders[:MAX_RECENT]])
