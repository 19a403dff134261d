"""Small dialogs: keyboard shortcuts, about, choosing a model, choosing where a project lives."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

from app.project.model_sources import bundled_demo_model, coco_weights_in_hub_cache

CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"


def shortcuts_text(actions: Sequence[QAction]) -> str:
    """An HTML table of the actions that have a shortcut (read from the actions, so it is never stale)."""
    rows = [
        f"<tr><td><b>{a.shortcut().toString()}</b></td><td>&nbsp;&nbsp;{a.text().replace('&', '')}</td></tr>"
        for a in actions
        if not a.shortcut().isEmpty()
    ]
    return (
        "<table>"
        + "".join(rows)
        + "</table><p>Mouse wheel: zoom. Ctrl+wheel: brush size. Middle button or Space+drag: pan.<br>"
        "Select: Ctrl/Shift+click adds to the selection. Polygon: click the first vertex, double-click or "
        "Enter to close; Shift adds to the selected instance, Ctrl cuts from it; Backspace removes a "
        "vertex, Esc abandons it.</p>"
    )


def show_shortcuts(parent: QWidget, actions: Sequence[QAction]) -> None:
    QMessageBox.information(parent, "Keyboard shortcuts", shortcuts_text(actions))


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
    path, _ = QFileDialog.getOpenFileName(parent, "Load weights", str(Path.home()), CHECKPOINT_FILTER)
    return path or None


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
