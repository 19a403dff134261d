"""Opening a folder's project from the window: the dialogs around
:func:`app.session.project_opener.open_document`.

Every refusal is a message box, never a crash; a read-only folder gets a user-chosen project location.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.session.document import Document
from app.session.project_opener import (
    ProjectDamagedError,
    ProjectInUseError,
    ProjectOpenError,
    export_readable,
    open_document,
    repair_damaged_project,
)
from app.ui.dialogs import choose_project_dir


def open_project(parent: QWidget, folder: Path) -> Document | None:
    """The document of ``folder``'s project (a child of ``parent``), or ``None`` once the user knows why."""
    try:
        return open_document(folder, partial(choose_project_dir, parent), parent)
    except ProjectInUseError as exc:
        QMessageBox.warning(parent, "Project already open", f"{folder}\n\n{exc}.")
    except ProjectDamagedError as exc:
        return _offer_repair(parent, folder, exc)
    except ProjectOpenError as exc:
        QMessageBox.critical(parent, "Cannot open the project", f"{folder}\n\n{exc}.")
    return None


def _offer_repair(parent: QWidget, folder: Path, damaged: ProjectDamagedError) -> Document | None:
    """Say the project file is damaged; offer to export what can be read (Save) and to repair it (Yes), then
    open the repaired project."""
    while True:
        answer = QMessageBox.critical(
            parent,
            "The project file is damaged",
            f"{folder}\n\n{damaged}.\n\nRepair it now (Yes), or first export what can be read (Save)?",
            QMessageBox.StandardButton.Yes
            | QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Yes,
        )
        if answer != QMessageBox.StandardButton.Save:
            break
        out, _ = QFileDialog.getSaveFileName(
            parent, "Export what can be read", str(folder / "readable.json"), "COCO JSON (*.json)"
        )
        if out:
            try:
                QMessageBox.information(parent, "Exported", export_readable(damaged, Path(out)))
            except ValueError as exc:
                QMessageBox.critical(parent, "Cannot export", f"{out}\n\n{exc}.")
    if answer != QMessageBox.StandardButton.Yes:
        return None
    try:
        kept = repair_damaged_project(damaged)
    except ValueError as exc:
        QMessageBox.critical(parent, "Cannot repair the project", f"{folder}\n\n{exc}.")
        return None
    QMessageBox.information(parent, "Project repaired", kept)
    return open_project(parent, folder)
