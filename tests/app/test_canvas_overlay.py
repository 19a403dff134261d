"""The canvas overlay: one layer item that paints every instance, built lazily and repainted in part.

What it draws is compared with a reference scene made the way the canvas used to draw (one pixmap item,
path item, box item and caption item per instance): the same pixels at full resolution, and at a
zoomed-out view no more than a thin line of antialiasing differences along the outlines. Partial
repaints (an edit, a selection, hiding) must leave the view exactly as a fresh redraw would.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsItemGroup,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from app.project.mask_ops import polygon_mask
from app.project.records import Provenance
from app.session.overlay import Overlay, instance_color
from app.ui.canvas.outline import contours, outline_path, outline_paths
from app.ui.canvas.overlay_item import CAPTION_MIN_SCREEN_SIZE, fill_image, subsampling
from app.ui.canvas.view import Canvas
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui

H, W = 600, 800


def _blobs(count: int, seed: int = 1, size=(H, W)) -> list[CroppedMask]:
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(count):
        cx, cy = rng.uniform(60, w - 60), rng.uniform(60, h - 60)
        r = rng.uniform(15, 60)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
        radii = r * rng.uniform(0.6, 1.0, 12)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        out.append(polygon_mask(points.tolist(), size))
    return out


def _ring(x0: int, y0: int, size: int = 120) -> CroppedMask:
    yy, xx = np.mgrid[:size, :size]
    d2 = (yy - size / 2) ** 2 + (xx - size / 2) ** 2
    ring = (d2 < (size * 0.45) ** 2) & (d2 > (size * 0.2) ** 2)
    ring[size // 2 - 4 : size // 2 + 4, :] = False  # two halves, each with a notch
    return CroppedMask(x0, y0, ring, (H, W))


def _overlays(masks: list[CroppedMask]) -> list[Overlay]:
    out = []
    for k, mask in enumerate(masks):
        box = tuple(float(v) for v in mask.tight_box())
        predicted = k % 3 == 0
        out.append(
            Overlay(
                instance_id=k + 1,
                mask=mask,
                box=box,
                color=instance_color(k + 1),
                category_name="cat" if predicted else "blob",
                score=0.5 + k / 400 if predicted else None,
                provenance=Provenance.PREDICTED if predicted else Provenance.EDITED,
            )
        )
    return out


def _background() -> QImage:
    rng = np.random.default_rng(0)
    rgb = np.ascontiguousarray(np.repeat(rng.integers(60, 200, (H // 20, W // 20, 3), np.uint8), 20, 0))
    rgb = np.ascontiguousarray(np.repeat(rgb, 20, 1))
    return QImage(rgb.data, W, H, 3 * W, QImage.Format.Format_RGB888).copy()


def _no_scrollbars(view: QGraphicsView) -> None:
    """Views compared pixel for pixel keep the same viewport size whatever the zoom."""
    view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)


# ------------------------------------------------------------------------------------------ the old way
def _reference_outline(mask: np.ndarray, x0: int, y0: int) -> QPainterPath:
    """The outline as the canvas built it before: addPolygon + closeSubpath per simplified contour."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for contour in contours:
        points = cv2.approxPolyDP(contour, 0.7, True).reshape(-1, 2).astype(np.float64) + 0.5
        path.addPolygon(QPolygonF([QPointF(x0 + px, y0 + py) for px, py in points.tolist()]))
        path.closeSubpath()
    return path


class _ReferenceCaption(QGraphicsSimpleTextItem):
    def __init__(self, text: str, color: QColor) -> None:
        super().__init__(text)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setBrush(QBrush(Qt.GlobalColor.white))
        font = QFont()
        font.setPointSize(9)
        self.setFont(font)
        self._background = QColor(color).darker(180)
        self._background.setAlpha(210)

    def paint(self, painter, option, widget=None):  # noqa: ANN001, ANN201
        painter.fillRect(self.boundingRect().adjusted(-2, -1, 2, 1), self._background)
        super().paint(painter, option, widget)


def _reference_view(qtbot, overlays, *, opacity=0.45, selected=(), boxes=False, scale=None) -> QGraphicsView:
    """A view drawn the way the canvas drew before: items per instance, grouped. At ``scale`` (screen pixels
    per image pixel), instances smaller on screen than ``CAPTION_MIN_SCREEN_SIZE`` have no caption."""
    view = QGraphicsView()
    qtbot.addWidget(view)
    _no_scrollbars(view)
    view.setRenderHint(QPainter.RenderHint.Antialiasing)
    view.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    view.setBackgroundBrush(QColor(40, 40, 40))
    scene = QGraphicsScene(view)
    view.setScene(scene)
    image = scene.addPixmap(QPixmap.fromImage(_background()))
    image.setZValue(-1)
    image.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
    scene.setSceneRect(QRectF(0, 0, W, H))
    for overlay in overlays:
        group = QGraphicsItemGroup()
        scene.addItem(group)
        crop = overlay.mask
        h, w = crop.mask.shape
        index = np.ascontiguousarray(crop.mask, dtype=np.uint8)
        qimage = QImage(index.data, w, h, w, QImage.Format.Format_Indexed8)
        qimage.setColorTable([0, overlay.color.rgba()])
        fill = QGraphicsPixmapItem(QPixmap.fromImage(qimage.copy()))
        fill.setPos(crop.x0, crop.y0)
        chosen = overlay.instance_id in selected
        fill.setOpacity(min(1.0, opacity + 0.35) if chosen else opacity)
        group.addToGroup(fill)
        outline = QGraphicsPathItem(_reference_outline(crop.mask, crop.x0, crop.y0))
        pen = QPen(overlay.color, 2)
        pen.setCosmetic(True)
        outline.setPen(pen)
        group.addToGroup(outline)
        x1, y1, x2, y2 = overlay.box
        box = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1))
        pen = QPen(overlay.color, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        box.setPen(pen)
        box.setVisible(boxes)
        group.addToGroup(box)
        score = [f"{overlay.score:.2f}"] if overlay.score is not None else []
        text = " ".join([overlay.category_name, *score])
        if scale is None or max(x2 - x1, y2 - y1) * scale >= CAPTION_MIN_SCREEN_SIZE:
            caption = _ReferenceCaption(text, overlay.color)
            caption.setPos(x1, y1)
            group.addToGroup(caption)
        group.setZValue(1 if chosen else 0)
    return view


# ------------------------------------------------------------------------------------------- helpers
def _canvas(qtbot, overlays, size=(900, 700)) -> Canvas:
    canvas = Canvas()
    qtbot.addWidget(canvas)
    _no_scrollbars(canvas)
    canvas.resize(*size)
    canvas.show()
    canvas.set_image(_background())
    canvas.set_overlays(overlays)
    return canvas


def _same_view(view: QGraphicsView, canvas: Canvas) -> None:
    view.resize(canvas.size())
    view.setTransform(canvas.transform())
    view.horizontalScrollBar().setValue(canvas.horizontalScrollBar().value())
    view.verticalScrollBar().setValue(canvas.verticalScrollBar().value())


def _grab(view: QGraphicsView) -> np.ndarray:
    image = view.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    return np.array(
        np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
            :, : 3 * image.width()
        ]
    ).reshape(image.height(), image.width(), 3)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2)


# -------------------------------------------------------------------------------------- the outline path
def _elements(path: QPainterPath) -> list[tuple]:
    return [
        (path.elementAt(i).type, path.elementAt(i).x, path.elementAt(i).y) for i in range(path.elementCount())
    ]


def test_outline_paths_match_addpolygon_closesubpath():
    rng = np.random.default_rng(5)
    crops = [(m.mask, m.x0, m.y0) for m in _blobs(20)] + [
        (_ring(10, 20).mask, 10, 20),
        (rng.random((40, 50)) > 0.6, 7, 11),  # many small contours and holes
        (np.eye(9, dtype=bool), 3, 4),  # a diagonal line
        (np.ones((3, 1), dtype=bool), 0, 0),  # a two-point polygon
        (np.zeros((5, 5), dtype=bool), 1, 1),  # nothing
    ]
    batch = outline_paths([(contours(mask), x0, y0) for mask, x0, y0 in crops])
    for (mask, x0, y0), path in zip(crops, batch, strict=True):
        assert _elements(path) == _elements(_reference_outline(mask, x0, y0))
        assert _elements(outline_path(mask, x0, y0)) == _elements(path)


def test_a_single_pixel_draws_nothing_either_way():
    mask = np.ones((1, 1), dtype=bool)
    # The old path was a lone move (nothing to stroke); the new one is empty.
    assert _reference_outline(mask, 4, 5).elementCount() == 1
    assert outline_path(mask, 4, 5).isEmpty()


def _distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Each point's distance to the closed polygon's edges."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    nearest = a + t[..., None] * ab
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(axis=1)


@pytest.mark.parametrize("tolerance", [1.4, 2.8, 5.6])
def test_zoomed_out_outline_is_the_contour_simplified_further(tolerance):
    spike = np.zeros((60, 80), dtype=bool)
    spike[10:50, 10:40] = True
    spike[29, 40:75] = True  # a one-pixel-wide appendage: it must stay in the outline
    crops = [*((m.mask, m.x0, m.y0) for m in _blobs(10, seed=3)), (_ring(30, 40).mask, 30, 40), (spike, 5, 6)]
    for mask, x0, y0 in crops:
        fine, coarse = outline_path(mask, x0, y0), outline_path(mask, x0, y0, tolerance)
        assert 0 < coarse.elementCount() <= fine.elementCount()
        vertices = np.array([(e[1], e[2]) for e in _elements(coarse)])
        cols, rows = vertices[:, 0] - x0 - 0.5, vertices[:, 1] - y0 - 0.5
        assert np.array_equal(cols, cols.round()) and np.array_equal(rows, rows.round())  # pixel centres
        assert mask[rows.astype(int), cols.astype(int)].all()  # of mask pixels
        polygons = [p for p in coarse.toSubpathPolygons() if p.size() > 1]
        for contour, polygon in zip(contours(mask), polygons, strict=False):
            points = contour.reshape(-1, 2) + (x0 + 0.5, y0 + 0.5)
            corners = np.array([(q.x(), q.y()) for q in polygon])
            assert _distance_to_polygon(points, corners).max() <= tolerance + 1e-9
    tip = outline_path(spike, 5, 6, 5.6).boundingRect()
    assert tip.right() == 5 + 74 + 0.5


# ----------------------------------------------------------------------------------------- the fill image
def test_fill_image_full_resolution_is_the_mask_in_its_colour():
    crop = _ring(5, 6, 50)
    color = QColor(200, 40, 90)
    target, image, _pixels = fill_image(crop.mask, crop.x0, crop.y0, color, 1)
    assert target == QRectF(5, 6, 50, 50)
    assert image.format() == QImage.Format.Format_ARGB32_Premultiplied
    pixels = np.frombuffer(image.constBits(), np.uint32).reshape(50, image.bytesPerLine() // 4)[:, :50]
    assert np.array_equal(pixels, np.where(crop.mask, np.uint32(color.rgba()), np.uint32(0)))


def test_fill_image_of_a_translucent_colour_is_premultiplied():
    color = QColor(200, 100, 50, 128)
    _target, image, _pixels = fill_image(np.ones((2, 3), dtype=bool), 0, 0, color, 1)
    reference = QImage(1, 1, QImage.Format.Format_ARGB32)
    reference.fill(color)
    expected = reference.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied).pixel(0, 0)
    assert image.pixel(2, 1) == expected and QColor.fromRgba(image.pixel(2, 1)).alpha() == 128


def test_fill_image_subsampled_takes_block_centres():
    crop = _ring(5, 6, 50)
    target, image, _pixels = fill_image(crop.mask, crop.x0, crop.y0, QColor(10, 20, 30), 4)
    sampled = crop.mask[2::4, 2::4]
    assert (image.height(), image.width()) == sampled.shape
    assert target == QRectF(5, 6, 4 * sampled.shape[1], 4 * sampled.shape[0])
    alpha = np.array(
        [[image.pixelColor(x, y).alpha() for x in range(image.width())] for y in range(image.height())]
    )
    assert np.array_equal(alpha > 0, sampled)


def test_subsampling_keeps_a_pixel_per_screen_pixel():
    assert subsampling(2.0) == 1 and subsampling(1.0) == 1 and subsampling(0.6) == 1
    assert subsampling(0.5) == 2 and subsampling(0.26) == 2 and subsampling(0.25) == 4
    assert subsampling(0.1) == 8
    for scale in np.geomspace(0.01, 4, 50):
        step = subsampling(scale)
        assert step * scale <= 1 or step == 1
        assert 2 * step * scale > 1


# ------------------------------------------------------------------------------- looks as it used to look
def test_full_resolution_view_is_pixel_identical_to_the_item_scene(qtbot):
    overlays = _overlays([*_blobs(12), _ring(600, 420)])
    canvas = _canvas(qtbot, overlays, size=(700, 500))
    canvas.resetTransform()  # 1 screen pixel per image pixel: no subsampling
    canvas.centerOn(QPointF(560, 380))
    canvas.set_selection([2, 5])
    canvas.set_show_boxes(True)
    reference = _reference_view(qtbot, overlays, selected={2, 5}, boxes=True)
    reference.show()
    _same_view(reference, canvas)
    qtbot.wait(10)
    diff = _diff(_grab(canvas), _grab(reference))
    assert diff.max() <= 2, np.argwhere(diff > 2)[:10]


def test_zoomed_out_view_differs_only_by_a_hair_along_outlines(qtbot):
    overlays = _overlays([*_blobs(30, seed=7), _ring(600, 420)])
    canvas = _canvas(qtbot, overlays, size=(460, 360))  # fit: ~0.55 screen px per image px
    canvas.scale(0.45, 0.45)  # ~0.25: fills subsampled by 4, outlines traced on every other pixel
    assert subsampling(canvas.transform().m11()) >= 2
    reference = _reference_view(qtbot, overlays, scale=canvas.transform().m11())
    reference.show()
    _same_view(reference, canvas)
    qtbot.wait(10)
    diff = _diff(_grab(canvas), _grab(reference))
    assert (diff > 8).mean() < 0.02  # antialiasing of outlines whose vertices moved by < 1/4 screen px
    assert (diff > 100).mean() < 0.002


# --------------------------------------------------------------------------- partial repaints stay exact
def _fresh_grab(qtbot, canvas: Canvas, overlays, *, selected=(), hidden=()) -> np.ndarray:
    fresh = _canvas(qtbot, overlays, size=(canvas.width(), canvas.height()))
    fresh.setTransform(canvas.transform())
    fresh.horizontalScrollBar().setValue(canvas.horizontalScrollBar().value())
    fresh.verticalScrollBar().setValue(canvas.verticalScrollBar().value())
    fresh.set_selection(selected)
    fresh.set_hidden(hidden)
    return _grab(fresh)


def _shown(qtbot, canvas: Canvas) -> np.ndarray:
    """What the window shows now: its backing store after the pending (partial) repaints, not a fresh
    rendering as ``grab()`` makes, so pixels a partial repaint forgot would still be there."""
    qtbot.wait(20)
    viewport = canvas.viewport()
    corner = viewport.mapTo(canvas, viewport.rect().topLeft())
    shot = canvas.screen().grabWindow(
        canvas.winId(), corner.x(), corner.y(), viewport.width(), viewport.height()
    )
    image = shot.toImage().convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return np.array(rows[:, : 3 * image.width()]).reshape(image.height(), image.width(), 3)


@pytest.mark.parametrize("zoom", [1.0, 0.3])
def test_partial_repaints_leave_what_a_full_redraw_shows(qtbot, zoom):
    masks = [*_blobs(16, seed=11), _ring(500, 300)]
    overlays = _overlays(masks)
    canvas = _canvas(qtbot, overlays, size=(W, H))  # at zoom 1 the whole image is in view
    canvas.resetTransform()
    canvas.scale(zoom, zoom)
    canvas.centerOn(QPointF(W / 2, H / 2))
    qtbot.waitExposed(canvas)
    shown = _shown(qtbot, canvas)
    assert _diff(shown, _grab(canvas)).max() == 0

    def check(overlays, **view) -> None:
        nonlocal shown
        now = _shown(qtbot, canvas)
        assert _diff(now, shown).max() > 0  # something did change on screen
        assert _diff(now, _fresh_grab(qtbot, canvas, overlays, **view)).max() == 0
        shown = now

    # An edit: instance 4 moves (and its caption with it); the others keep their drawings.
    moved = masks[3]
    shifted = CroppedMask(min(moved.x0 + 37, W - moved.mask.shape[1]), moved.y0, moved.mask, (H, W))
    current = _overlays([*masks[:3], shifted, *masks[4:]])  # the others: new overlays, same masks
    kept = {i: canvas.overlay.drawing(i) for i in canvas.instance_ids()}
    canvas.set_overlays(current)
    assert all(canvas.overlay.drawing(i) is kept[i] for i in kept if i != 4)
    assert canvas.overlay.drawing(4) is not kept[4]
    check(current)
    canvas.set_selection([4, 9])
    check(current, selected=[4, 9])
    canvas.set_selection([9])
    check(current, selected=[9])
    canvas.set_hidden([1, 9])
    check(current, selected=[9], hidden=[1, 9])
    canvas.set_overlays(current[2:])  # instances removed
    check(current[2:], selected=[9], hidden=[1, 9])
    canvas.set_overlays(current)  # and back
    check(current, selected=[9], hidden=[1, 9])


def test_display_settings_repaint_everything(qtbot):
    overlays = _overlays(_blobs(10, seed=2))
    canvas = _canvas(qtbot, overlays, size=(500, 400))
    qtbot.waitExposed(canvas)
    before = _shown(qtbot, canvas)
    for change, undo in [
        (lambda: canvas.set_opacity(0.9), lambda: canvas.set_opacity(0.45)),
        (lambda: canvas.set_show_boxes(True), lambda: canvas.set_show_boxes(False)),
        (lambda: canvas.set_show_category_names(False), lambda: canvas.set_show_category_names(True)),
        (lambda: canvas.set_show_scores(False), lambda: canvas.set_show_scores(True)),
    ]:
        change()
        changed = _shown(qtbot, canvas)
        assert _diff(changed, before).max() > 0
        assert _diff(changed, _grab(canvas)).max() == 0
        undo()
        assert _diff(_shown(qtbot, canvas), before).max() == 0


# ------------------------------------------------------------------------------ order, hits, visibility
def test_drawing_order_hit_testing_and_visibility(qtbot):
    # Two overlapping squares: the later one is on top, unless the earlier one is selected.
    a = np.ones((100, 100), dtype=bool)
    first, second = CroppedMask(100, 100, a, (H, W)), CroppedMask(150, 150, a, (H, W))
    overlays = _overlays([first, second])
    canvas = _canvas(qtbot, overlays)
    overlap = QPointF(175, 175)
    assert canvas.instance_ids() == [1, 2]
    assert canvas.instance_at(overlap) == 2
    assert canvas.instance_at(QPointF(120, 120)) == 1
    assert canvas.instance_at(QPointF(10, 10)) is None
    canvas.set_selection([1])
    assert canvas.instance_at(overlap) == 1
    canvas.set_hidden([1])
    assert canvas.instance_at(overlap) == 2
    assert not canvas.is_visible(1) and canvas.is_visible(2)
    canvas.set_hidden([])
    assert canvas.is_visible(1)
    assert not canvas.is_visible(99)


def test_overlays_without_an_image_draw_nothing(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.set_message("Loading…")
    canvas.set_overlays(_overlays(_blobs(3)))
    assert canvas.instance_ids() == [] and not canvas.is_visible(1)
    canvas.set_image(_background())
    assert canvas.instance_ids() == []
    canvas.set_overlays(_overlays(_blobs(3)))
    assert canvas.instance_ids() == [1, 2, 3]


def test_view_settings_outlive_the_image_and_the_overlay_is_drawn_on_the_next(qtbot):
    overlays = _overlays(_blobs(6, seed=4))
    canvas = _canvas(qtbot, overlays, size=(500, 400))
    qtbot.waitExposed(canvas)
    canvas.set_selection([2])
    canvas.set_hidden([3])
    canvas.set_opacity(0.8)
    canvas.set_show_boxes(True)
    expected = _canvas(qtbot, overlays, size=(500, 400))  # a fresh canvas set up the same way
    expected.set_selection([2])
    expected.set_hidden([3])
    expected.set_opacity(0.8)
    expected.set_show_boxes(True)
    for show_next in (lambda: canvas.set_image(_background()), lambda: canvas.set_message("Loading…")):
        show_next()  # the scene is cleared: the overlay item must survive it
        assert canvas.instance_ids() == []
        canvas.set_image(_background())
        canvas.set_overlays(overlays)
        assert canvas.instance_ids() == [1, 2, 3, 4, 5, 6]
        assert canvas.selection() == {2} and not canvas.is_visible(3) and canvas.is_visible(4)
        assert canvas.opacity == 0.8 and canvas.show_boxes
        assert _diff(_shown(qtbot, canvas), _grab(expected)).max() == 0


def test_only_exposed_instances_are_built(qtbot):
    masks = [
        CroppedMask(20 + 60 * (k % 12), 20 + 60 * (k // 12), np.ones((40, 40), bool), (H, W))
        for k in range(96)
    ]
    canvas = _canvas(qtbot, _overlays(masks), size=(300, 240))
    canvas.resetTransform()
    canvas.scale(2, 2)
    canvas.centerOn(QPointF(60, 60))
    qtbot.wait(20)
    _grab(canvas)
    built = [i for i in canvas.instance_ids() if canvas.overlay.drawing(i).outlines]
    assert 0 < len(built) < 20  # the corner in view, not the 96
    assert all(1 in canvas.overlay.drawing(i).outlines for i in built)  # full resolution at 2x
    canvas.fit()
    _grab(canvas)
    step = max(1, subsampling(canvas.transform().m11()) // 2)
    assert all(step in canvas.overlay.drawing(i).outlines for i in canvas.instance_ids())


def test_empty_mask_still_draws_its_box_and_caption(qtbot):
    empty = Overlay(
        instance_id=7,
        mask=CroppedMask(0, 0, np.zeros((0, 0), bool), (H, W)),
        box=(100.0, 100.0, 200.0, 150.0),
        color=instance_color(7),
        category_name="ghost",
        score=None,
        provenance=Provenance.EDITED,
    )
    canvas = _canvas(qtbot, [empty])
    qtbot.waitExposed(canvas)
    without_box = _shown(qtbot, canvas)  # the caption alone
    canvas.set_show_boxes(True)
    with_box = _shown(qtbot, canvas)
    assert _diff(with_box, without_box).max() > 0
    canvas.set_overlays([])
    nothing = _shown(qtbot, canvas)
    assert _diff(nothing, without_box).max() > 0
    assert _diff(nothing, _grab(canvas)).max() == 0
