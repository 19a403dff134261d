"""The category panel's buttons in a real window: add, rename, recolour, delete with reassignment, start from
the model's classes; every one is an undo step and is in the project file at once."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

import app.ui.category_editing as categories_module
from app.session.commands import new_instance
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    win = open_with_fake_model(qtbot, folder, tmp_path)
    doc = win.document
    cats = doc.ensure_categories(["cat", "dog"])
    full = np.zeros((48, 64), dtype=bool)
    full[5:20, 5:30] = True
    for image in doc.images():
        doc.apply_edit(image.id, add=[new_instance(CroppedMask.from_full(full), cats["dog"])])
    win.undo_stack.clear()
    return win


def _answer(monkeypatch, **answers):
    """Make the dialogs answer: getText -> text, getItem -> item, getColor -> colour."""
    dialogs = categories_module.QInputDialog
    if "text" in answers:
        monkeypatch.setattr(dialogs, "getText", staticmethod(lambda *a, **k: (answers["text"], True)))
    if "item" in answers:
        monkeypatch.setattr(dialogs, "getItem", staticmethod(lambda *a, **k: (answers["item"], True)))
    if "color" in answers:
        monkeypatch.setattr(
            categories_module.QColorDialog, "getColor", staticmethod(lambda *a, **k: QColor(answers["color"]))
        )


def _click(qtbot, window, key):
    qtbot.mouseClick(window.category_dock.buttons[key], Qt.MouseButton.LeftButton)


def _names(window):
    return [c.name for c in window.document.store.categories()]


def _pick(window, name):
    panel = window.category_panel
    row = [window.document.category(i).name for i in panel.category_ids()].index(name)
    panel.setCurrentRow(row)


def test_add_rename_recolour_with_undo(qtbot, window, monkeypatch):
    _answer(monkeypatch, text="bird")
    _click(qtbot, window, "add")
    assert _names(window) == ["cat", "dog", "bird"]
    bird = window.document.store.categories()[-1].id
    assert window.editor.current_category == bird == window.category_panel.current_category()
    _pick(window, "cat")
    assert window.editor.current_category == window.document.store.categories()[0].id
    _answer(monkeypatch, text="kitten", color="#123456")
    _click(qtbot, window, "rename")
    _click(qtbot, window, "colour")
    cat = window.document.store.categories()[0]
    assert (cat.name, cat.color) == ("kitten", "#123456")
    assert window.category_panel.names()[0].startswith("kitten")
    for _ in range(3):
        window.undo_stack.undo()
    assert _names(window) == ["cat", "dog"]
    assert window.document.store.categories()[0].color != "#123456"
    window.undo_stack.redo()
    assert _names(window) == ["cat", "dog", "bird"]
    assert window.document.store.categories()[-1].id == bird  # same id back


def test_delete_reassigns_instances_in_every_image_and_undo_gives_them_back(qtbot, window, monkeypatch):
    store = window.document.store
    cat, dog = store.categories()
    before = {r.id: r.category_id for r in store.instances()}
    assert set(before.values()) == {dog.id}
    _pick(window, "dog")
    _answer(monkeypatch, item="cat")
    _click(qtbot, window, "delete")
    assert _names(window) == ["cat"]
    assert {r.category_id for r in store.instances()} == {cat.id}
    assert window.document.instances(window.document.images()[1].id)[0].category_id == cat.id
    window.undo_stack.undo()
    assert [(c.id, c.name, c.color) for c in store.categories()] == [
        (c.id, c.name, c.color) for c in (cat, dog)
    ]
    assert {r.id: r.category_id for r in store.instances()} == before
    # A category with instances cannot go without somewhere for them to go.
    assert not window.category_editing.delete(dog.id, None)
    assert window.category_editing.delete(cat.id, None)  # empty: fine
    assert _names(window) == ["dog"]


def test_start_from_the_models_classes(qtbot, window):
    _click(qtbot, window, "model")
    assert _names(window) == ["cat", "dog", "circle", "square"]
    assert window.undo_stack.count() == 1  # one step for all of them
    window.undo_stack.undo()
    assert _names(window) == ["cat", "dog"]
