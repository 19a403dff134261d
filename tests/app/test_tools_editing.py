"""The editing tools driven with real mouse and key events on the canvas of a real window (offscreen);
each test checks the resulting mask pixels in the project file and that undo / redo round-trips."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import FakePredictor, rect_mask
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from app.project.mask_ops import combine, polygon_mask, stroke_mask
from app.project.records import ImageStatus, Provenance
from app.session.commands import new_instance
from app.ui.main_window import MainWindow
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui

H, W = 200, 300


def _rect(x0, y0, x1, y1) -> CroppedMask:
    return rect_mask(x0, y0, x1, y1, (H, W))


@pytest.fixture
def window(qtbot, tmp_path):
    """A window on a folder of two images; the first holds two rectangles (cat, dog)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (W, H), (90, 90, 90)).save(folder / name)
    predictor = FakePredictor()
    win = MainWindow(predictor_factory=lambda _source: lambda: predictor)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"fake")
    assert win.open_folder(folder, weights=str(weights))
    qtbot.waitUntil(win.canvas.has_image, timeout=5000)
    doc = win.document
    cats = doc.ensure_categories(["cat", "dog"])
    image = doc.current_image_id
    doc.apply_edit(
        image,
        add=[
            new_instance(_rect(20, 20, 80, 80), cats["cat"]),
            new_instance(_rect(150, 40, 250, 160), cats["dog"]),
        ],
    )
    qtbot.waitUntil(lambda: len(win.canvas.instance_ids()) == 2, timeout=3000)
    win.undo_stack.clear()  # the setup above is not part of the history under test
    win.activateWindow()
    win.canvas.setFocus()
    return win


def _vp(window, x: float, y: float) -> QPoint:
    return window.canvas.mapFromScene(QPointF(x, y))


def _scene(window, point: QPoint) -> tuple[float, float]:
    p = window.canvas.mapToScene(point)
    return p.x(), p.y()


def _click(qtbot, window, x, y, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, modifier, _vp(window, x, y))


def _drag(qtbot, window, points) -> list[tuple[float, float]]:
    """Press at the first point, move through the others, release at the last; returns the scene points
    the canvas really received (viewport pixels are whole numbers)."""
    viewport = window.canvas.viewport()
    vps = [_vp(window, x, y) for x, y in points]
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=vps[0])
    for p in vps[1:]:
        qtbot.mouseMove(viewport, p)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=vps[-1])
    return [_scene(window, p) for p in vps]


def _key(qtbot, window, key, modifier=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window.canvas, key, modifier)


def _records(window):
    return window.document.store.instances(window.document.current_image_id)


def _mask(window, instance_id) -> np.ndarray:
    record = next(r for r in _records(window) if r.id == instance_id)
    return rle_to_mask(record.rle).to_full()


def test_brush_stroke_paints_the_selected_mask_as_one_undo_step(qtbot, window):
    cat = _records(window)[0]
    _click(qtbot, window, 50, 50)  # the Select tool is active at start
    assert window.editor.selection() == [cat.id]
    _key(qtbot, window, Qt.Key.Key_B)
    assert window.editor.tool.name == "brush"
    before = _mask(window, cat.id)
    received = _drag(qtbot, window, [(70, 50), (90, 50), (110, 50), (110, 70)])
    expected = combine(
        rle_to_mask(cat.rle), stroke_mask(received, window.editor.brush_size / 2, (H, W)), add=True
    )
    after = _mask(window, cat.id)
    assert np.array_equal(after, expected.to_full())
    assert after[50, 105] and not before[50, 105]
    assert window.undo_stack.count() == 1  # the whole stroke is one step
    record = next(r for r in _records(window) if r.id == cat.id)
    assert record.provenance is Provenance.EDITED
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(_mask(window, cat.id), before)
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(_mask(window, cat.id), after)


def test_eraser_cuts_and_brush_without_selection_draws_a_new_instance(qtbot, window):
    dog = _records(window)[1]
    _click(qtbot, window, 200, 100)
    _key(qtbot, window, Qt.Key.Key_E)
    received = _drag(qtbot, window, [(140, 100), (200, 100), (260, 100)])
    expected = combine(
        rle_to_mask(dog.rle), stroke_mask(received, window.editor.brush_size / 2, (H, W)), add=False
    )
    assert np.array_equal(_mask(window, dog.id), expected.to_full())
    assert not _mask(window, dog.id)[100, 200]
    window.editor.select([])
    _key(qtbot, window, Qt.Key.Key_B)
    window.editor.set_brush_size(9)
    received = _drag(qtbot, window, [(120, 170), (130, 180)])
    new = [r for r in _records(window) if r.id not in (window.document.store.instances(0) or [])][-1]
    assert len(_records(window)) == 3 and window.editor.selection() == [new.id]
    assert np.array_equal(_mask(window, new.id), stroke_mask(received, 4.5, (H, W)).to_full())
    assert new.category_id == window.editor.current_category
    window.undo_stack.undo()
    assert len(_records(window)) == 2


def test_brush_size_keys_and_ctrl_wheel(qtbot, window):
    editor = window.editor
    size = editor.brush_size
    _key(qtbot, window, Qt.Key.Key_BracketRight)
    assert editor.brush_size > size
    _key(qtbot, window, Qt.Key.Key_BracketLeft)
    _key(qtbot, window, Qt.Key.Key_BracketLeft)
    assert editor.brush_size < size
    zoom = window.canvas.zoom_factor()
    size = editor.brush_size
    pos = QPointF(_vp(window, 100, 100))
    event = QWheelEvent(
        pos,
        window.canvas.viewport().mapToGlobal(pos),
        QPoint(),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(window.canvas.viewport(), event)
    assert editor.brush_size > size and window.canvas.zoom_factor() == zoom  # the wheel did not zoom


def test_select_tab_delete_hide_and_category_keys(qtbot, window):
    cat, dog = _records(window)
    editor = window.editor
    _click(qtbot, window, 50, 50)
    _click(qtbot, window, 200, 100, Qt.KeyboardModifier.ControlModifier)
    assert editor.selection() == [cat.id, dog.id]
    _click(qtbot, window, 5, 190)  # the background clears the selection
    assert editor.selection() == []
    _key(qtbot, window, Qt.Key.Key_Tab)
    assert editor.selection() == [cat.id]
    _key(qtbot, window, Qt.Key.Key_Tab)
    assert editor.selection() == [dog.id]
    _key(qtbot, window, Qt.Key.Key_1)  # category 1 ("cat") for the selected dog
    assert _records(window)[1].category_id == cat.category_id
    _key(qtbot, window, Qt.Key.Key_H)
    assert not window.canvas.is_visible(dog.id) and window.canvas.instance_at(QPointF(200, 100)) is None
    _key(qtbot, window, Qt.Key.Key_H, Qt.KeyboardModifier.ShiftModifier)
    assert window.canvas.is_visible(dog.id)
    _key(qtbot, window, Qt.Key.Key_Delete)
    assert [r.id for r in _records(window)] == [cat.id]
    qtbot.waitUntil(lambda: window.canvas.instance_ids() == [cat.id], timeout=2000)
    while window.undo_stack.canUndo():
        window.undo_stack.undo()
    assert [(r.id, r.category_id, r.rle["counts"]) for r in _records(window)] == [
        (r.id, r.category_id, r.rle["counts"]) for r in (cat, dog)
    ]


def test_polygon_creates_adds_and_cuts(qtbot, window):
    cat = _records(window)[0]
    _key(qtbot, window, Qt.Key.Key_P)
    corners = [(100, 120), (140, 120), (140, 180), (100, 180)]
    received = [_scene(window, _vp(window, x, y)) for x, y in corners]
    for x, y in corners:
        _click(qtbot, window, x, y)
    _click(qtbot, window, *corners[0])  # clicking the first vertex closes it
    new = _records(window)[-1]
    assert len(_records(window)) == 3
    assert np.array_equal(_mask(window, new.id), polygon_mask(received, (H, W)).to_full())
    # Shift+Enter adds a polygon to the selected instance, Ctrl+double-click cuts one out.
    window.editor.select([cat.id])
    for x, y in [(70, 30), (120, 30), (120, 60)]:
        _click(qtbot, window, x, y)
    _key(qtbot, window, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert _mask(window, cat.id)[35, 110]
    for x, y in [(30, 30), (60, 30), (60, 60)]:
        _click(qtbot, window, x, y, Qt.KeyboardModifier.ControlModifier)
    qtbot.mouseDClick(
        window.canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        _vp(window, 30, 60),
    )
    assert not _mask(window, cat.id)[50, 40] and _mask(window, cat.id)[70, 25]
    assert window.undo_stack.count() == 3
    # Backspace drops a vertex; Esc abandons the polygon without an edit.
    _click(qtbot, window, 10, 10)
    _click(qtbot, window, 20, 10)
    _key(qtbot, window, Qt.Key.Key_Backspace)
    assert window.editor.tool.points == [_scene(window, _vp(window, 10, 10))]
    _key(qtbot, window, Qt.Key.Key_Escape)
    assert window.editor.tool.points == [] and window.undo_stack.count() == 3


def test_fill_merge_split_accept_with_shortcuts(qtbot, window):
    cat, dog = _records(window)
    # Punch a hole in the cat with the eraser, then fill it.
    _click(qtbot, window, 50, 50)
    _key(qtbot, window, Qt.Key.Key_E)
    window.editor.set_brush_size(10)
    _drag(qtbot, window, [(50, 50)])
    assert not _mask(window, cat.id)[50, 50]
    _key(qtbot, window, Qt.Key.Key_F)
    assert np.array_equal(_mask(window, cat.id), _rect(20, 20, 80, 80).to_full())
    _key(qtbot, window, Qt.Key.Key_V)
    _click(qtbot, window, 200, 100, Qt.KeyboardModifier.ShiftModifier)
    _key(qtbot, window, Qt.Key.Key_M)
    records = _records(window)
    assert [r.id for r in records] == [cat.id] and records[0].area == 60 * 60 + 100 * 120
    _key(qtbot, window, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    records = _records(window)
    assert sorted(r.area for r in records) == [3600, 12000]
    assert set(window.editor.selection()) == {r.id for r in records}
    _key(qtbot, window, Qt.Key.Key_A)
    assert {r.provenance for r in _records(window)} == {Provenance.VERIFIED}
    window.editor.select([])
    _key(qtbot, window, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    assert window.document.store.image(window.document.current_image_id).status is ImageStatus.VERIFIED
    count = window.undo_stack.count()
    assert count == 6  # erase, fill, merge, split, accept, accept image
    for _ in range(count):
        window.undo_stack.undo()
    assert [(r.id, r.rle["counts"], r.provenance) for r in _records(window)] == [
        (r.id, r.rle["counts"], r.provenance) for r in (cat, dog)
    ]
    for _ in range(count):
        window.undo_stack.redo()
    assert len(_records(window)) == 2


def test_pan_with_middle_button_and_zoom_keys(qtbot, window):
    canvas = window.canvas
    _key(qtbot, window, Qt.Key.Key_Plus)
    _key(qtbot, window, Qt.Key.Key_Plus)
    assert canvas.zoom_factor() > 1.5
    bar = canvas.horizontalScrollBar()
    start = bar.value()
    center = canvas.viewport().rect().center()
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.MiddleButton, pos=center)
    qtbot.mouseMove(canvas.viewport(), center + QPoint(-60, 0))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.MiddleButton, pos=center + QPoint(-60, 0))
    assert bar.value() == start + 60
    assert window.undo_stack.count() == 0  # panning is not an edit


def test_help_lists_every_tool_and_edit_shortcut(window):
    from app.ui.dialogs import shortcut_rows

    rows = shortcut_rows(window.actions())
    for key, name in (
        ("V", "Select"),
        ("B", "Brush"),
        ("E", "Eraser"),
        ("P", "Polygon"),
        ("R", "Box prompt"),
        ("[", "Smaller brush"),
        ("]", "Larger brush"),
        ("Del", "Delete instance"),
        ("F", "Fill holes"),
        ("M", "Merge instances"),
        ("Shift+M", "Split into parts"),
        ("A", "Accept instance"),
        ("Shift+A", "Accept image"),
        ("Tab", "Select next instance"),
        ("Ctrl+Z", "Undo"),
    ):
        assert any(key in keys.split(", ") and label.startswith(name) for keys, label in rows), (key, name)


def test_drawing_tools_show_a_crosshair_and_select_gives_the_cursor_back(window):
    viewport = window.canvas.viewport()
    default = viewport.cursor().shape()
    for name in ("brush", "eraser", "polygon", "box"):
        window.editor.set_tool(name)
        assert viewport.cursor().shape() == Qt.CursorShape.CrossCursor, name
        window.editor.set_tool("select")
        assert viewport.cursor().shape() == default, name
