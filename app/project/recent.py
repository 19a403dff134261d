"""The recently opened folders (File ▸ Recent folders) and whether the last one reopens on start (an
app-wide setting, on by default), kept together in the user data dir as JSON.

The file is ``{"folders": [...], "reopen_last": bool}``; an older file that is a bare list of folders
still reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.project.locations import user_data_dir

MAX_RECENT = 10
REOPEN_LAST_DEFAULT = True


def _path() -> Path:
    return user_data_dir() / "recent_folders.json"


def _read() -> dict[str, Any]:
    try:
        raw = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = None
    if isinstance(raw, list):
        raw = {"folders": raw}
    if not isinstance(raw, dict):
        raw = {}
    folders = raw.get("folders")
    reopen = raw.get("reopen_last")
    return {
        "folders": [p for p in folders if isinstance(p, str)] if isinstance(folders, list) else [],
        "reopen_last": reopen if isinstance(reopen, bool) else REOPEN_LAST_DEFAULT,
    }


def _write(data: dict[str, Any]) -> None:
    from maskrcnn_core.data.coco import write_json_atomic  # numpy/cv2 only, no torch

    write_json_atomic(_path(), data)


def recent_folders() -> list[Path]:
    """Most recent first; folders that no longer exist are left out."""
    return [Path(p) for p in _read()["folders"] if Path(p).is_dir()]


def add_recent_folder(folder: Path) -> None:
    folder = folder.resolve()
    data = _read()
    folders = [folder] + [f for f in recent_folders() if f != folder]
    data["folders"] = [str(f) for f in folders[:MAX_RECENT]]
    _write(data)


def drop_missing_folders() -> list[Path]:
    """Forget the recent folders that no longer exist; returns them (most recent first)."""
    data = _read()
    missing = [Path(p) for p in data["folders"] if not Path(p).is_dir()]
    if missing:
        data["folders"] = [p for p in data["folders"] if Path(p).is_dir()]
        _write(data)
    return missing


def reopen_last_folder() -> bool:
    """Whether the app opens the last folder when it starts without one."""
    return bool(_read()["reopen_last"])


def set_reopen_last_folder(on: bool) -> None:
    data = _read()
    data["reopen_last"] = bool(on)
    _write(data)
