"""Opening a folder's project from the window: the dialogs around
:func:`app.session.project_opener.open_document`.

Every refusal is a message box, never a crash; a read-only folder gets a user-chosen project location; a
damaged project file can be repaired, looked at read-only, or exported from.
"""

from __future__ import annotations

from enum import Enum
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
    open_read_only,
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


class DamagedChoice(Enum):
    """What the user chose for a damaged project file."""

    REPAIR = "Repair"
    OPEN_READ_ONLY = "Open read-only"
    EXPORT = "Export what can be read…"
    CANCEL = "Cancel"


def ask_what_to_do(parent: QWidget, folder: Path, damaged: ProjectDamagedError) -> DamagedChoice:
    """Say the project file is damaged and ask what to do, one clearly labelled button per choice."""
    box = QMessageBox(QMessageBox.Icon.Critical, "The project file is damaged", "", parent=parent)
    box.setText(
        f"{folder}\n\n{damaged}.\n\nRepair it now (what SQLite can still read is kept, the damaged file "
        "stays beside it), look at it read-only, or first export what can be read?"
    )
    roles = {
        DamagedChoice.REPAIR: QMessageBox.ButtonRole.AcceptRole,
        DamagedChoice.OPEN_READ_ONLY: QMessageBox.ButtonRole.ActionRole,
        DamagedChoice.EXPORT: QMessageBox.ButtonRole.ActionRole,
        DamagedChoice.CANCEL: QMessageBox.ButtonRole.RejectRole,
    }
    buttons = {choice: box.addButton(choice.value, role) for choice, role in roles.items()}
    box.setDefaultButton(buttons[DamagedChoice.REPAIR])
    box.setEscapeButton(buttons[DamagedChoice.CANCEL])
    box.exec()
    clicked = box.clickedButton()
    return next((choice for choice, button in buttons.items() if button == clicked), DamagedChoice.CANCEL)


def _offer_repair(parent: QWidget, folder: Path, damaged: ProjectDamagedError) -> Document | None:
    """Say the project file is damaged; offer a repair, a read-only look and an export of what can be read."""
    while (choice := ask_what_to_do(parent, folder, damaged)) is DamagedChoice.EXPORT:
        out, _ = QFileDialog.getSaveFileName(
            parent, "Export what can be read", str(folder / "readable.json"), "COCO JSON (*.json)"
        )
        if out:
            try:
                QMessageBox.information(parent, "Exported", export_readable(damaged, Path(out)))
            except ValueError as exc:
                QMessageBox.critical(parent, "Cannot export", f"{out}\n\n{exc}.")
    if choice is DamagedChoice.OPEN_READ_ONLY:
        try:
            return open_read_only(damaged, parent)
        except ValueError as exc:
            QMessageBox.critical(parent, "Cannot read the project", f"{folder}\n\n{exc}.")
            return None
    if choice is not DamagedChoice.REPAIR:
        return None
    return repair_and_open(parent, folder, damaged.project_dir)


def repair_and_open(parent: QWidget, folder: Path, project_dir: Path) -> Document | None:
    """Repair ``folder``'s damaged project file (in ``project_dir``), say what was kept, and open the
    repaired project; ``None`` once the user knows why not."""
    try:
        kept = repair_damaged_project(folder, project_dir)
    except ValueError as exc:
        QMessageBox.critical(parent, "Cannot repair the project", f"{folder}\n\n{exc}.")
        return None
    QMessageBox.information(parent, "Project repaired", kept)
    return open_project(parent, folder)
