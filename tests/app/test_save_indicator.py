"""The status bar says the work is saved, in a real window on a real project: after each committed edit
(with its time), and in red when the project file refuses a write; Help ▸ Keyboard shortcuts is a table
that scrolls in a resizable dialog."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from PIL import Image
from PySide6.QtWidgets import QDialog

from app.session.commands import add_instance
from app.ui.dialogs import ShortcutsDialog
from app.ui.panels.save_indicator import FAILED, SAVED
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    return open_with_fake_model(qtbot, folder, tmp_path)


def _draw(window) -> None:
    editor = window.editor
    category = window.document.categories()[0].id
    full = np.zeros((48, 64), dtype=bool)
    full[5:20, 5:30] = True
    editor.push(add_instance(editor.context, editor.image_id, CroppedMask.from_full(full), category, "Draw"))


def test_the_indicator_follows_the_documents_commits(qtbot, window):
    indicator = window.save_indicator
    window.document.ensure_categories(["thing"])
    assert indicator.text().startswith(SAVED) and indicator.isVisible()
    with qtbot.waitSignal(window.document.saved, timeout=1000):
        _draw(window)
    assert indicator.text().startswith(f"{SAVED} · ")
    saved_text = indicator.text()
    window.document.store._db.execute("PRAGMA query_only = ON")  # the file refuses writes, as a read-only one
    with qtbot.waitSignal(window.document.saveFailed, timeout=1000):
        _draw(window)
    assert indicator.text().startswith(f"{FAILED}: ") and "readonly" in indicator.text()
    assert "\n" not in indicator.text() and "still holds" in indicator.toolTip()
    window.document.store._db.execute("PRAGMA query_only = OFF")
    _draw(window)
    assert indicator.text().startswith(f"{SAVED} · ") and indicator.text() >= saved_text
    window.close_project()
    assert indicator.text() == ""


def test_the_shortcuts_dialog_lists_every_key_in_a_table_that_scrolls(qtbot, window):
    dialog = ShortcutsDialog(window.actions(), window)
    qtbot.addWidget(dialog)
    dialog.resize(400, 250)  # smaller than the list: the table scrolls
    dialog.show()
    qtbot.waitExposed(dialog)
    table = dialog.table
    keys = {table.item(row, 1).text(): table.item(row, 0).text() for row in range(table.rowCount())}
    assert keys["Redo"] == "Ctrl+Y, Ctrl+Shift+Z" or set(keys["Redo"].split(", ")) == {
        "Ctrl+Y",
        "Ctrl+Shift+Z",
    }
    assert table.rowCount() == sum(1 for a in window.actions() if a.shortcuts())
    assert table.verticalScrollBar().maximum() > 0
    assert not (dialog.windowFlags() & dialog.windowFlags().MSWindowsFixedSizeDialogHint)
    dialog.resize(600, 900)
    assert dialog.height() == 900
    dialog.reject()
    assert dialog.result() == QDialog.DialogCode.Rejected
