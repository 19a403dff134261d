"""The main window's keys in a real window: no key sequence belongs to two enabled actions of the same
context (Qt runs neither of them then, calling it an "ambiguous shortcut overload"), and the redo keys
really redo."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QShortcut
from PySide6.QtTest import QTest

from app.session.commands import add_instance
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    win = open_with_fake_model(qtbot, folder, tmp_path)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    return win


def _add_square(window) -> None:
    """One drawing edit on the current image, through the editor (an undo step)."""
    editor = window.editor
    category = window.document.ensure_categories(["thing"])["thing"]
    full = np.zeros((48, 64), dtype=bool)
    full[5:20, 5:30] = True
    editor.push(add_instance(editor.context, editor.image_id, CroppedMask.from_full(full), category, "Draw"))


def _key_owners(window) -> dict[tuple[Qt.ShortcutContext, str], list[str]]:
    """Every key sequence of an enabled action or shortcut of the window, by context, with its owners (an
    action that lists one key twice is two owners)."""
    owners: dict[tuple[Qt.ShortcutContext, str], list[str]] = defaultdict(list)
    for action in {id(a): a for a in window.findChildren(QAction)}.values():
        if action.isEnabled():
            for key in action.shortcuts():
                owners[(action.shortcutContext(), key.toString())].append(action.text().replace("&", ""))
    for shortcut in window.findChildren(QShortcut):
        if shortcut.isEnabled():
            for key in shortcut.keys():
                owners[(shortcut.context(), key.toString())].append(f"shortcut {shortcut.objectName()}")
    return owners


def test_no_key_sequence_has_two_enabled_owners(window):
    doc = window.document
    _add_square(window)
    _add_square(window)
    window.undo_stack.undo()  # now both Undo and Redo are enabled
    assert window.undo_stack.canUndo() and window.undo_stack.canRedo()
    assert doc.current_image_id >= 0
    owners = _key_owners(window)
    assert ("Ctrl+Shift+Z" in {key for _c, key in owners}) and ("Ctrl+Y" in {key for _c, key in owners})
    shared = {key: names for (_context, key), names in owners.items() if len(names) > 1}
    assert shared == {}, f"key sequences with more than one enabled owner: {shared}"


@pytest.mark.parametrize("keys", [("Z", "Ctrl+Shift"), ("Y", "Ctrl")])
def test_redo_keys_redo_an_undone_edit(qtbot, window, keys):
    doc = window.document
    image = doc.current_image_id
    _add_square(window)
    assert len(doc.instances(image)) == 1
    window.undo_stack.undo()
    assert doc.instances(image) == []
    letter, modifiers = keys
    modifier = Qt.KeyboardModifier.ControlModifier
    if "Shift" in modifiers:
        modifier |= Qt.KeyboardModifier.ShiftModifier
    QTest.keyClick(window, getattr(Qt.Key, f"Key_{letter}"), modifier)
    qtbot.waitUntil(lambda: len(doc.instances(image)) == 1, timeout=2000)
    assert window.undo_stack.canUndo() and not window.undo_stack.canRedo()
