"""Canvas basics on a real window and project file: the right-click menu on an instance, hiding every
overlay (held key and View toggle) and colouring overlays by category or by instance."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import open_with_fake_model, rect_mask
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QMouseEvent
from PySide6.QtWidgets import QApplication, QMenu

from app.project.mask_ops import polygon_mask
from app.project.records import Provenance
from app.project.settings import ProjectSettings
from app.session.commands import new_instance
from app.session.overlay import instance_color
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui

H, W = 200, 300
CAT_AT, DOG_AT = (50, 50), (200, 100)


def _rect(x0, y0, x1, y1) -> CroppedMask:
    return rect_mask(x0, y0, x1, y1, (H, W))


@pytest.fixture
def window(qtbot, tmp_path):
    """A window on a folder of one image holding two rectangles (cat, dog) and a second dog part."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (W, H), (90, 90, 90)).save(folder / "a.png")
    win = open_with_fake_model(qtbot, folder, tmp_path)
    qtbot.waitUntil(win.canvas.has_image, timeout=5000)
    doc = win.document
    cats = doc.ensure_categories(["cat", "dog"])
    doc.apply_edit(
        doc.current_image_id,
        add=[
            new_instance(_rect(20, 20, 80, 80), cats["cat"]),
            new_instance(_rect(150, 40, 250, 160), cats["dog"]),
        ],
    )
    qtbot.waitUntil(lambda: len(win.canvas.instance_ids()) == 2, timeout=3000)
    win.undo_stack.clear()  # the setup is not part of the history under test
    win.activateWindow()
    win.canvas.setFocus()
    return win


def _ids(window) -> dict[str, int]:
    names = {c.id: c.name for c in window.document.categories()}
    return {names[r.category_id]: r.id for r in window.editor.instances()}


def _record(window, instance_id: int):
    """The instance as the project file has it now."""
    return next(
        r for r in window.document.visible_instances(window.document.current_image_id) if r.id == instance_id
    )


def _right_click(qtbot, window, x: float, y: float) -> QMenu:
    """A real context-menu event on the canvas at scene point (x, y); returns the menu it opened."""
    viewport = window.canvas.viewport()
    pos = window.canvas.mapFromScene(QPointF(x, y))
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos))
    QApplication.sendEvent(viewport, event)
    qtbot.waitUntil(lambda: isinstance(QApplication.activePopupWidget(), QMenu), timeout=2000)
    return QApplication.activePopupWidget()


def _item(menu: QMenu, text: str):
    for action in menu.actions():
        if action.text().replace("&", "") == text:
            return action
    raise AssertionError(f"no {text!r} in {[a.text() for a in menu.actions()]}")


def test_right_click_selects_then_changes_category_accepts_and_deletes_with_undo(qtbot, window):
    ids = _ids(window)
    window.editor.select_one(ids["cat"])
    menu = _right_click(qtbot, window, *DOG_AT)
    assert window.editor.selection() == [ids["dog"]]  # the unselected instance under the click
    submenu = _item(menu, "Category").menu()
    assert [a.text() for a in submenu.actions()] == ["cat", "dog"]
    assert _item(submenu, "dog").isChecked()
    _item(submenu, "cat").trigger()
    menu.close()
    dog = _record(window, ids["dog"])
    assert window.document.category(dog.category_id).name == "cat"
    window.undo_stack.undo()
    assert window.document.category(_record(window, ids["dog"]).category_id).name == "dog"

    menu = _right_click(qtbot, window, *DOG_AT)
    _item(menu, "Accept instance").trigger()
    menu.close()
    assert _record(window, ids["dog"]).provenance is Provenance.VERIFIED

    menu = _right_click(qtbot, window, *DOG_AT)
    _item(menu, "Delete instance").trigger()
    menu.close()
    qtbot.waitUntil(lambda: ids["dog"] not in window.canvas.instance_ids(), timeout=3000)
    window.undo_stack.undo()
    qtbot.waitUntil(lambda: len(window.canvas.instance_ids()) == 2, timeout=3000)


def test_right_click_on_a_selected_instance_keeps_the_selection_for_merge_split_and_hide(qtbot, window):
    ids = _ids(window)
    window.editor.select([ids["cat"], ids["dog"]])
    menu = _right_click(qtbot, window, *CAT_AT)
    assert window.editor.selection() == [ids["cat"], ids["dog"]]
    _item(menu, "Merge instances").trigger()
    menu.close()
    qtbot.waitUntil(lambda: window.canvas.instance_ids() == [ids["cat"]], timeout=3000)

    menu = _right_click(qtbot, window, *DOG_AT)  # the merged instance covers the dog's pixels now
    _item(menu, "Split into parts").trigger()
    menu.close()
    qtbot.waitUntil(lambda: len(window.canvas.instance_ids()) == 2, timeout=3000)
    assert window.undo_stack.count() == 2  # merge, split: one undo step each

    menu = _right_click(qtbot, window, *CAT_AT)
    _item(menu, "Hide / show instance").trigger()
    menu.close()
    assert not window.canvas.is_visible(window.editor.selection()[0])
    assert window.canvas.instance_at(QPointF(*CAT_AT)) is None


def test_held_key_and_view_toggle_hide_every_overlay(qtbot, window):
    canvas = window.canvas
    assert canvas.overlays_shown()
    qtbot.keyPress(canvas, Qt.Key.Key_X)
    assert not canvas.overlays_shown()
    qtbot.keyRelease(canvas, Qt.Key.Key_X)
    assert canvas.overlays_shown()
    window.hide_overlays_action.trigger()
    assert not canvas.overlays_shown()
    qtbot.keyPress(canvas, Qt.Key.Key_X)
    qtbot.keyRelease(canvas, Qt.Key.Key_X)
    assert not canvas.overlays_shown()  # letting go of the key does not undo the toggle
    window.hide_overlays_action.trigger()
    assert canvas.overlays_shown()
    assert window.undo_stack.count() == 0  # a view setting, not an edit


def test_overlays_take_the_category_colour_and_follow_a_recolour_or_the_view_option(qtbot, window):
    doc, canvas = window.document, window.canvas
    ids = _ids(window)
    cat = next(c for c in doc.categories() if c.name == "cat")

    def colour(name: str) -> QColor:
        return canvas.overlay.drawing(ids[name]).overlay.color

    assert window.colour_by_category_action.isChecked()  # the default
    assert colour("cat") == QColor(cat.color)
    doc.update_category(cat.id, color="#12ab34")
    qtbot.waitUntil(lambda: colour("cat") == QColor("#12ab34"), timeout=3000)

    window.colour_by_category_action.trigger()
    assert colour("cat") == instance_color(ids["cat"])
    assert ProjectSettings(doc.store).overlay_colour == "instance"  # the project remembers it
    folder = doc.folder
    window.close_project()
    assert window.open_folder(folder)
    qtbot.waitUntil(lambda: len(window.canvas.instance_ids()) == 2, timeout=5000)
    assert not window.colour_by_category_action.isChecked()
    assert window.canvas.overlay.drawing(ids["cat"]).overlay.color == instance_color(ids["cat"])


def test_brush_keeps_its_screen_size_at_any_zoom_and_shows_its_size_while_resizing(qtbot, window):
    editor, canvas = window.editor, window.canvas
    window.edit_actions.tool_actions["brush"].trigger()
    brush = editor.tools["brush"]
    qtbot.mouseMove(canvas.viewport(), canvas.mapFromScene(QPointF(*CAT_AT)))
    qtbot.waitUntil(lambda: brush._cursor is not None and brush._cursor.isVisible(), timeout=2000)

    def cursor_on_screen() -> float:
        return brush._cursor.rect().width() * canvas.zoom_factor()

    screen = editor.brush_screen_size
    before = editor.brush_size
    assert cursor_on_screen() == pytest.approx(screen, abs=canvas.zoom_factor())  # within one image pixel
    for _ in range(4):
        window.canvas.zoom_in()
    assert editor.brush_screen_size == screen
    assert editor.brush_size < before  # fewer image pixels for the same circle on screen
    assert cursor_on_screen() == pytest.approx(screen, abs=canvas.zoom_factor())
    assert brush.size_label() == ""  # zooming chose no size

    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert editor.brush_screen_size > screen
    assert brush.size_label() == f"{editor.brush_size} px"
    qtbot.waitUntil(lambda: brush.size_label() == "", timeout=3000)  # gone after a moment


def _mask_of(window, instance_id: int) -> np.ndarray:
    return rle_to_mask(_record(window, instance_id).rle).to_full()


def _drag_vertex(qtbot, window, start: tuple[float, float], end: tuple[float, float]) -> None:
    viewport, canvas = window.canvas.viewport(), window.canvas
    a, b = canvas.mapFromScene(QPointF(*start)), canvas.mapFromScene(QPointF(*end))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    move = QMouseEvent(
        QEvent.Type.MouseMove,
        QPointF(b),
        viewport.mapToGlobal(QPointF(b)),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(viewport, move)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def test_refine_with_polygon_drag_a_vertex_then_enter_is_one_undo_step(qtbot, window):
    ids = _ids(window)
    editor = window.editor
    before = _mask_of(window, ids["cat"])
    editor.select_one(ids["cat"])
    qtbot.keyClick(window.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ShiftModifier)
    refine = editor.tools["refine"]
    assert editor.tool is refine
    # The rectangle's outline: its four pixel corners (a pixel is inside when its centre is).
    assert sorted(refine.points) == [(20, 20), (20, 80), (80, 20), (80, 80)]
    assert refine.handle_count() == 4
    _drag_vertex(qtbot, window, (80, 80), (110, 120))
    moved = list(refine.points)
    assert (80, 80) not in moved
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert editor.tool is editor.tools["select"]
    after = _mask_of(window, ids["cat"])
    assert np.array_equal(after, polygon_mask(moved, (H, W)).to_full())
    assert after.sum() > before.sum()
    assert window.undo_stack.count() == 1
    assert window.undo_stack.undoText() == "Refine with polygon"
    window.undo_stack.undo()
    assert np.array_equal(_mask_of(window, ids["cat"]), before)


def test_refine_adds_a_vertex_on_an_edge_deletes_it_and_esc_abandons(qtbot, window):
    ids = _ids(window)
    editor = window.editor
    before = _mask_of(window, ids["cat"])
    editor.select_one(ids["cat"])
    window.edit_actions.refine_action.trigger()
    refine = editor.tools["refine"]
    qtbot.mouseDClick(
        window.canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        window.canvas.mapFromScene(QPointF(50, 20)),
    )
    assert refine.handle_count() == 5
    qtbot.keyClick(window.canvas, Qt.Key.Key_Delete)  # the new vertex, not the instance
    assert refine.handle_count() == 4
    assert ids["cat"] in window.canvas.instance_ids()
    _drag_vertex(qtbot, window, (20, 20), (5, 5))
    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert editor.tool is editor.tools["select"]
    assert refine.handle_count() == 0
    assert np.array_equal(_mask_of(window, ids["cat"]), before)
    assert window.undo_stack.count() == 0


def test_refine_keeps_holes_and_refuses_several_parts(qtbot, window):
    doc, editor = window.document, window.editor
    ids = _ids(window)
    ring = np.zeros((H, W), dtype=bool)
    ring[100:180, 20:120] = True
    ring[130:150, 50:80] = False  # the hole
    cat = _record(window, ids["cat"]).category_id
    doc.apply_edit(doc.current_image_id, add=[new_instance(CroppedMask.from_full(ring), cat)])
    qtbot.waitUntil(lambda: len(window.canvas.instance_ids()) == 3, timeout=3000)
    window.undo_stack.clear()
    ring_id = next(i for i in window.canvas.instance_ids() if i not in ids.values())
    editor.select_one(ring_id)
    window.edit_actions.refine_action.trigger()
    assert len(editor.tools["refine"].points) == 4  # the outer outline only
    _drag_vertex(qtbot, window, (20, 100), (10, 90))
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    after = _mask_of(window, ring_id)
    assert not after[130:150, 50:80].any()  # the hole is still a hole
    assert after[95, 15] and after.sum() > ring.sum()

    messages: list[str] = []
    editor.message.connect(messages.append)
    editor.select([ids["cat"], ids["dog"]])
    editor.merge_selected()
    window.edit_actions.refine_action.trigger()
    assert editor.tool is editor.tools["select"]
    assert "2 separate parts" in messages[-1]
