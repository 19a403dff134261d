"""Small dialogs: keyboard shortcuts, about, choosing a model, choosing where a project lives."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.project.model_sources import bundled_demo_model, coco_weights_in_hub_cache

CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"


MOUSE_HELP = (
    "Mouse wheel: zoom. Ctrl+wheel: brush size. Middle button or Space+drag: pan.\n"
    "Select: Ctrl/Shift+click adds to the selection. Polygon: click the first vertex, double-click or "
    "Enter to close; Shift adds to the selected instance, Ctrl cuts from it; Backspace removes a "
    "vertex, Esc abandons it."
)


def shortcut_rows(actions: Sequence[QAction]) -> list[tuple[str, str]]:
    """``(keys, action name)`` for each action that has a key (read from the actions, so never stale); an
    action with several keys lists them all."""
    return [
        (", ".join(k.toString() for k in a.shortcuts()), a.text().replace("&", ""))
        for a in actions
        if a.shortcuts()
    ]


class ShortcutsDialog(QDialog):
    """Help ▸ Keyboard shortcuts: a table of every key (it scrolls; the dialog resizes) and the mouse's
    gestures below it."""

    def __init__(self, actions: Sequence[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(actions)
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        for row, (keys, name) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(name))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.resizeColumnToContents(0)
        mouse = QLabel(MOUSE_HELP, self)
        mouse.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(mouse)
        layout.addWidget(buttons)
        self.resize(520, 560)


def show_shortcuts(parent: QWidget, actions: Sequence[QAction]) -> None:
    ShortcutsDialog(actions, parent).exec()


def show_about(parent: QWidget) -> None:
    # The installed distribution's version (pyproject.toml's), read from its metadata: importing the engine
    # package for its __version__ would make the widget layer depend on the engine's lazy root package.
    QMessageBox.about(
        parent,
        "About Mask R-CNN Studio",
        f"<h3>Mask R-CNN Studio {version('maskrcnn-studio')}</h3>"
        "<p>Instance segmentation with Mask R-CNN: auto-segment a folder, correct the masks, "
        "fine-tune on your corrections. Everything is saved as you go.</p>",
    )


def choose_model(parent: QWidget) -> str | None:
    """Offer the bundled demo model, COCO weights found in the torch hub cache, or any checkpoint file.

    Returns the checkpoint path chosen, or ``None`` when cancelled.
    """
    options: dict[str, str] = {}
    demo = bundled_demo_model()
    if demo is not None:
        options[f"Demo model (synthetic shapes) — {demo.name}"] = str(demo)
    for path in coco_weights_in_hub_cache():
        options[f"COCO weights (torch hub cache) — {path.name}"] = str(path)
    other = "Another checkpoint file…"
    if options:
        choice, ok = QInputDialog.getItem(parent, "Load weights", "Model:", [*options, other], 0, False)
        if not ok:
            return None
        if choice != other:
            return options[choice]
    chosen, _ = QFileDialog.getOpenFileName(parent, "Load weights", str(Path.home()), CHECKPOINT_FILTER)
    return chosen or None


def choose_project_dir(parent: QWidget, folder: Path, reason: str, suggested: Path | None) -> Path | None:
    """Explain that ``folder`` cannot hold its project and let the user pick a directory for it."""
    answer = QMessageBox.question(
        parent,
        "Folder is read-only",
        f"{reason}.\n\nThe images stay where they are; only the project file (your annotations) needs a "
        "writable place. Choose one now?",
    )
    if answer != QMessageBox.StandardButton.Yes:
        return None
    start = suggested or Path.home()
    start.mkdir(parents=True, exist_ok=True)
    chosen = QFileDialog.getExistingDirectory(
        parent, f"Where to keep the project of {folder.name}", str(start)
    )
    return Path(chosen) if chosen else None


CROWD_AS_INSTANCES = "Import as instances"
CROWD_AS_CROWD = "Import as crowd regions"


def ask_crowd_as_instances(parent: QWidget, file_name: str) -> bool | None:
    """The question for a COCO file whose every mask is a crowd region (CVAT's brush masks): ``True`` to
    import them as instances, ``False`` as crowd regions, ``None`` to cancel the import."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Import COCO")
    box.setText(f"Every mask in {file_name} is marked as a crowd region (iscrowd: 1).")
    box.setInformativeText(
        "CVAT exports brush masks this way, so they are most likely objects. Crowd regions are kept but "
        "never trained on. How should they be imported?"
    )
    instances = box.addButton(CROWD_AS_INSTANCES, QMessageBox.ButtonRole.AcceptRole)
    crowd = box.addButton(CROWD_AS_CROWD, QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(instances)
    box.exec()
    clicked = box.clickedButton()
    return True if clicked is instances else False if clicked is crowd else None
