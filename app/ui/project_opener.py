"""Opening a folder's project from the window: read-only folders, a project open elsewhere, bad files.

Every refusal is a message box, never a crash; a read-only folder gets a user-chosen project location,
remembered for next time.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from app.project.locations import ProjectLocationError, remember_project_dir
from app.project.lock import ProjectLockedError
from app.project.store import ProjectStore, StoreError
from app.ui.dialogs import choose_project_dir


def open_project(parent: QWidget, folder: Path) -> ProjectStore | None:
    """The open store of ``folder``'s project, or ``None`` (after telling the user why)."""
    try:
        try:
            return ProjectStore.open(folder)
        except ProjectLocationError as exc:
            if not folder.is_dir():
                raise
            chosen = choose_project_dir(parent, folder, str(exc), exc.suggested_dir)
            if chosen is None:
                return None
            store = ProjectStore.open(folder, project_dir=chosen)
            remember_project_dir(folder, chosen)
            return store
    except ProjectLockedError as exc:
        QMessageBox.warning(parent, "Project already open", f"{folder}\n\n{exc}.")
    except (ProjectLocationError, StoreError) as exc:
        QMessageBox.critical(parent, "Cannot open the project", f"{folder}\n\n{exc}.")
    return None
