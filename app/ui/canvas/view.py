"""The canvas: a QGraphicsView showing the image with its instance overlay.

Scene coordinates are original-image pixels (pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``), so a
mask crop at ``(x0, y0)`` is placed at exactly that scene position and boxes are drawn as given (xyxy).
Each instance is drawn as: the filled mask (its colour, at the overlay opacity), its outline, an
optional box and an optional caption (category, score) that keeps its size at any zoom.

The whole overlay is one scene item (:class:`_OverlayLayer`) that paints the instances in order; what it
draws for an instance (:class:`_Drawing`) is built on first paint and kept while the instance is unchanged,
so an instance outside the exposed area costs nothing, and after an edit only the edited instance is
rebuilt and repainted. Zoomed out, a fill is drawn from its mask subsampled to no less than one pixel per
screen pixel (what nearest-neighbour drawing of the full crop shows anyway) and an outline is simplified to
within a quarter of a screen pixel, at a fraction of the work.

Interaction: the mouse wheel zooms (with Ctrl it changes the brush size instead: ``brushWheel``); the
middle button, or the left button while Space is held, pans. Every other press, move and release goes to
the active editing tool (:mod:`app.tools`) in scene coordinates; without a tool a click selects.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from PySide6.QtCore import QByteArray, QDataStream, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QTextLayout,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from app.ui.canvas.overlay import Overlay

ZOOM_STEP = 1.25
SELECTED_OPACITY_BOOST = 0.35  # a selected instance's fill is this much more opaque
# Screen pixels around an instance's crop and box that its outline (2 px) and box pen (1.5 px) may touch,
# antialiasing included; and around a caption's background.
_PEN_MARGIN = 3.0
_CAPTION_MARGIN = 2.0
_CAPTION_LAYOUTS_MAX = 4096


class _Captions:
    """Caption text laid out exactly as ``QGraphicsSimpleTextItem`` does (same font, same lines), cached
    by text: drawing a laid-out caption is a glyph copy."""

    def __init__(self) -> None:
        self.font = QFont()
        self.font.setPointSize(9)
        self.pen = QPen(QBrush(Qt.GlobalColor.white), 1)
        self._layouts: dict[str, tuple[QTextLayout, float, float]] = {}

    def layout(self, text: str) -> tuple[QTextLayout, float, float]:
        """``(layout, width, height)`` of ``text``; ``(0, 0, width, height)`` is the item's bounding rect."""
        found = self._layouts.get(text)
        if found is None:
            if len(self._layouts) >= _CAPTION_LAYOUTS_MAX:
                self._layouts.clear()
            layout = QTextLayout(text.replace("\n", "\u2028"), self.font)
            layout.setCacheEnabled(True)
            layout.beginLayout()
            while layout.createLine().isValid():
                pass
            layout.endLayout()
            width = y = 0.0
            for i in range(layout.lineCount()):
                line = layout.lineAt(i)
                width = max(width, line.naturalTextWidth())
                line.setPosition(QPointF(0, y))
                y += line.height()
            found = self._layouts[text] = (layout, width, y)
        return found


class _Drawing:
    """What the overlay draws for one instance. The outline path and the fill images (one per level of
    detail) are built the first time they are painted and kept while the instance's overlay is unchanged."""

    __slots__ = (
        "overlay",
        "pen",
        "box_rect",
        "background",
        "bounds",
        "has_pixels",
        "caption",
        "contours",
        "outlines",
        "_box_pen",
        "_fills",
    )

    def __init__(self, overlay: Overlay) -> None:
        self.overlay = overlay
        color = overlay.color
        self.pen = QPen(color, 2)
        self.pen.setCosmetic(True)  # 2 screen pixels at any zoom
        x1, y1, x2, y2 = overlay.box
        self.box_rect = QRectF(x1, y1, x2 - x1, y2 - y1)
        self.background = QColor(color).darker(180)
        self.background.setAlpha(210)
        crop = overlay.mask
        h, w = crop.mask.shape
        self.has_pixels = bool(h and w)
        # Scene extent of the crop and the box (the outline and pens add a few screen pixels).
        self.bounds = (
            min(crop.x0, x1, x2) if h and w else min(x1, x2),
            min(crop.y0, y1, y2) if h and w else min(y1, y2),
            max(crop.x0 + w, x1, x2) if h and w else max(x1, x2),
            max(crop.y0 + h, y1, y2) if h and w else max(y1, y2),
        )
        # The caption under the canvas's caption settings (show labels, show scores): (settings, layout)
        # with layout = (QTextLayout, width, height), or None for no caption.
        self.caption: tuple[tuple[bool, bool], tuple[QTextLayout, float, float] | None] | None = None
        # Filled in by the canvas when first painted: the mask's contours, and the outline path made of them
        # for each level of detail (simplified to within 0.7 x level pixels: see _paint_overlay).
        self.contours: Sequence[np.ndarray] | None = None
        self.outlines: dict[int, QPainterPath] = {}
        self._box_pen: QPen | None = None
        self._fills: dict[int, tuple[QRectF, QImage, np.ndarray]] = {}

    @property
    def box_pen(self) -> QPen:
        if self._box_pen is None:
            self._box_pen = QPen(self.overlay.color, 1.5, Qt.PenStyle.DashLine)
            self._box_pen.setCosmetic(True)
        return self._box_pen

    def extent(self, scale: float, caption: tuple[float, float] | None) -> tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` in scene pixels that painting touches at ``scale`` screen pixels
        per image pixel, the caption of ``caption`` = (width, height) screen pixels included."""
        margin = _PEN_MARGIN / scale
        left, top, right, bottom = self.bounds
        left, top, right, bottom = left - margin, top - margin, right + margin, bottom + margin
        if caption is not None:
            x1, y1 = self.overlay.box[0], self.overlay.box[1]
            pad = _CAPTION_MARGIN / scale
            left, top = min(left, x1 - pad - 2 / scale), min(top, y1 - pad - 1 / scale)
            right = max(right, x1 + (caption[0] + 2) / scale + pad)
            bottom = max(bottom, y1 + (caption[1] + 1) / scale + pad)
        return left, top, right, bottom

    def fill(self, step: int) -> tuple[QRectF, QImage]:
        """The fill image at one pixel per ``step`` x ``step`` mask pixels, and where it goes (scene)."""
        found = self._fills.get(step)
        if found is None:
            crop = self.overlay.mask
            found = self._fills[step] = _fill_image(crop.mask, crop.x0, crop.y0, self.overlay.color, step)
        return found[0], found[1]


class _OverlayLayer(QGraphicsItem):
    """The instance overlay as one item above the image; ``canvas`` does the painting."""

    def __init__(self, canvas: Canvas, bounds: QRectF) -> None:
        super().__init__()
        self._canvas = canvas
        self._bounds = bounds
        # exposedRect tells paint() which part of the view is being redrawn (a brush move repaints a few
        # pixels: only the instances there are drawn).
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._bounds

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:  # noqa: ANN001
        self._canvas._paint_overlay(painter, option.exposedRect)


class Canvas(QGraphicsView):
    """Image + overlay viewer. ``instanceClicked(id)`` fires when a mask is clicked and no tool is set;
    ``brushWheel(steps)`` when the wheel turns with Ctrl held (+1 per notch away from the user)."""

    instanceClicked = Signal(int)
    brushWheel = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)  # panning is ours: the left button belongs to tools
        self.setMouseTracking(True)  # tools draw their cursor (brush circle, polygon rubber band)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self._image_item: QGraphicsPixmapItem | None = None
        self._message_item: QGraphicsSimpleTextItem | None = None
        self._layer: _OverlayLayer | None = None
        self._drawings: dict[int, _Drawing] = {}  # drawn instances, in drawing order
        self._overlays: dict[int, Overlay] = {}
        self._captions = _Captions()
        self._selected: set[int] = set()
        self._hidden: set[int] = set()
        self.tool = None  # the active tool (app.ui.tools.base.Tool) or None
        self._space_held = False
        self._pan_from: QPoint | None = None
        self.opacity = 0.45
        self.show_boxes = False
        self.show_labels = True
        self.show_scores = True

    # ------------------------------------------------------------------------------------------- content
    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image`` (fit to the view), or an empty canvas with ``message`` (e.g. why it failed)."""
        scene = self.scene()
        scene.clear()
        self._image_item = self._message_item = self._layer = None
        self._drawings, self._overlays = {}, {}
        if image is None or image.isNull():
            self._message_item = scene.addSimpleText(message or "No image")
            self._message_item.setBrush(QBrush(QColor(230, 230, 230)))
            scene.setSceneRect(self._message_item.boundingRect().adjusted(-20, -20, 20, 20))
            self.resetTransform()
            return
        self._image_item = scene.addPixmap(QPixmap.fromImage(image))
        self._image_item.setZValue(-1)
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # Resampling a 12-megapixel photo on every repaint costs tens of milliseconds; cached at screen
        # resolution, a repaint (a brush move, an overlay change) is a copy. Re-rendered once per zoom.
        self._image_item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        rect = QRectF(0, 0, image.width(), image.height())
        # Captions keep their screen size and may stick out of the image: the layer reaches well beyond.
        margin = 10.0 * max(image.width(), image.height()) + 1000.0
        self._layer = _OverlayLayer(self, rect.adjusted(-margin, -margin, margin, margin))
        scene.addItem(self._layer)
        scene.setSceneRect(rect)
        self.fit()

    def set_message(self, message: str) -> None:
        """Replace the canvas content by a message (while loading, or when the file is unusable)."""
        self.set_image(None, message)

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Replace the instance overlay."""
        # Instances whose overlay did not change keep their drawing (outline, fill images): after an edit
        # only the edited instance is rebuilt and only its area is repainted.
        old = self._drawings
        previous = list(old)
        self._overlays = {o.instance_id: o for o in overlays}
        self._drawings = {}
        if self._layer is None:
            return
        changed = []
        for overlay in overlays:
            i = overlay.instance_id
            drawing = old.pop(i, None)
            if drawing is None or not _same_drawing(drawing.overlay, overlay):
                if drawing is not None:
                    changed.append(drawing)
                drawing = _Drawing(overlay)
                changed.append(drawing)
            else:
                drawing.overlay = overlay  # draws the same: same mask, box, colour and caption
            self._drawings[i] = drawing
        changed.extend(old.values())  # removed
        # The order decides what is drawn over what: if it changed, everything is repainted.
        before = set(previous)
        reordered = [i for i in previous if i in self._drawings] != [i for i in self._drawings if i in before]
        self._repaint(None if reordered or len(changed) > 32 else changed)

    def instance_ids(self) -> list[int]:
        """The instances drawn now, in drawing order."""
        return list(self._drawings)

    def has_image(self) -> bool:
        return self._image_item is not None

    def message(self) -> str:
        return self._message_item.text() if self._message_item is not None else ""

    # ------------------------------------------------------------------------------------------- display
    def set_opacity(self, opacity: float) -> None:
        self.opacity = min(max(opacity, 0.0), 1.0)
        self._repaint()

    def set_show_boxes(self, show: bool) -> None:
        self.show_boxes = show
        self._repaint()

    def set_show_labels(self, show: bool) -> None:
        self.show_labels = show
        self._repaint()

    def set_show_scores(self, show: bool) -> None:
        self.show_scores = show
        self._repaint()

    def select_instance(self, instance_id: int | None) -> None:
        """Highlight one instance (fully opaque fill), or none."""
        self.set_selection([] if instance_id is None else [instance_id])

    def set_selection(self, instance_ids: Iterable[int]) -> None:
        """Highlight these instances (more opaque fill)."""
        selected = set(instance_ids)
        changed = selected ^ self._selected
        self._selected = selected
        self._repaint([self._drawings[i] for i in changed if i in self._drawings])

    def selection(self) -> set[int]:
        return set(self._selected)

    def set_hidden(self, instance_ids: Iterable[int]) -> None:
        """Hide these instances from view (a view setting: nothing is edited)."""
        hidden = set(instance_ids)
        changed = hidden ^ self._hidden
        self._hidden = hidden
        self._repaint([self._drawings[i] for i in changed if i in self._drawings])

    def is_visible(self, instance_id: int) -> bool:
        return instance_id in self._drawings and instance_id not in self._hidden

    def instance_at(self, point: QPointF) -> int | None:
        """The topmost shown instance whose mask covers the scene point, or ``None``."""
        return self._instance_at(point)

    def zoom_in(self) -> None:
        self.scale(ZOOM_STEP, ZOOM_STEP)

    def zoom_out(self) -> None:
        self.scale(1 / ZOOM_STEP, 1 / ZOOM_STEP)

    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self._image_item is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom_factor(self) -> float:
        return self.transform().m11()

    # --------------------------------------------------------------------------------------------- input
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        steps = (event.angleDelta().y() > 0) - (event.angleDelta().y() < 0)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            if steps:
                self.brushWheel.emit(steps)
        elif steps > 0:
            self.zoom_in()
        elif steps < 0:
            self.zoom_out()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        button = event.button()
        left = button == Qt.MouseButton.LeftButton
        if button == Qt.MouseButton.MiddleButton or (left and self._space_held):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        scene_pos = self.mapToScene(event.position().toPoint())
        if self.tool is not None and self._image_item is not None:
            self.tool.press(scene_pos, event)
            return
        if button == Qt.MouseButton.LeftButton:
            hit = self._instance_at(scene_pos)
            if hit is not None:
                self.instanceClicked.emit(hit)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._pan_from is not None:
            now = event.position().toPoint()
            delta = now - self._pan_from
            self._pan_from = now
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            return
        if self.tool is not None and self._image_item is not None:
            self.tool.move(self.mapToScene(event.position().toPoint()), event)
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self.viewport().unsetCursor()
            return
        if self.tool is not None and self._image_item is not None:
            self.tool.release(self.mapToScene(event.position().toPoint()), event)
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self.tool is not None and self._image_item is not None:
            self.tool.double_click(self.mapToScene(event.position().toPoint()), event)
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = True
            return
        if self.tool is not None and self.tool.key_press(event):
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override
        if self.tool is not None:
            self.tool.leave()
        super().leaveEvent(event)

    # ------------------------------------------------------------------------------------------ internals
    def _instance_at(self, point: QPointF) -> int | None:
        x, y = int(np.floor(point.x())), int(np.floor(point.y()))
        for instance_id in reversed(self._drawing_order()):  # topmost first
            mask = self._overlays[instance_id].mask
            mx, my = x - mask.x0, y - mask.y0
            if 0 <= my < mask.mask.shape[0] and 0 <= mx < mask.mask.shape[1] and mask.mask[my, mx]:
                return instance_id
        return None

    def _drawing_order(self) -> list[int]:
        """Shown instances, bottom first: the overlay's order, selected ones on top."""
        shown = [i for i in self._overlays if i not in self._hidden]
        if self._selected:
            shown.sort(key=lambda i: i in self._selected)  # stable: the order is kept within each part
        return shown

    def _caption_text(self, overlay: Overlay) -> str:
        parts = [overlay.label] if self.show_labels else []
        if self.show_scores and overlay.score is not None:
            parts.append(f"{overlay.score:.2f}")
        return " ".join(parts)

    def _caption(self, drawing: _Drawing) -> tuple[QTextLayout, float, float] | None:
        """The laid-out caption of ``drawing`` under the current settings, or None when it has none."""
        settings = (self.show_labels, self.show_scores)
        cached = drawing.caption
        if cached is None or cached[0] != settings:
            text = self._caption_text(drawing.overlay)
            cached = drawing.caption = (settings, self._captions.layout(text) if text else None)
        return cached[1]

    def _caption_size(self, drawing: _Drawing) -> tuple[float, float] | None:
        layout = self._caption(drawing)
        return None if layout is None else (layout[1], layout[2])

    def _repaint(self, drawings: Iterable[_Drawing] | None = None) -> None:
        """Schedule a repaint of the whole overlay, or of the area of ``drawings`` (old and new ones)."""
        if self._layer is None:
            return
        if drawings is None:
            self._layer.update()
            return
        scale = _view_scale(self.transform())
        for drawing in drawings:
            left, top, right, bottom = drawing.extent(scale, self._caption_size(drawing))
            self._layer.update(QRectF(left, top, right - left, bottom - top))

    def _paint_overlay(self, painter: QPainter, exposed: QRectF) -> None:
        """Paint the instances that reach into ``exposed`` (scene pixels), bottom first."""
        transform = painter.worldTransform()
        scale = _view_scale(transform)
        # Subsampling is chosen for device pixels (two per logical pixel on a high-DPI screen).
        step = _subsampling(scale * painter.device().devicePixelRatioF())
        outline_step = max(1, step // 2)
        ex_left, ex_top, ex_right, ex_bottom = exposed.getCoords()
        captions = self._captions
        shown = []
        for instance_id in self._drawing_order():
            drawing = self._drawings.get(instance_id)
            if drawing is None:
                continue
            layout = self._caption(drawing)
            left, top, right, bottom = drawing.extent(scale, None if layout is None else layout[1:])
            if right < ex_left or left > ex_right or bottom < ex_top or top > ex_bottom:
                continue
            shown.append((instance_id, drawing, layout))
        # Outlines not built yet (first display, or a new zoom level) are made in one batch. Contours are
        # traced once, at full resolution; zoomed out, they are simplified further (within a quarter of
        # a screen pixel, where 0.7 image pixels would be a small fraction of one): fewer vertices to
        # stroke, the same shape on screen.
        missing = [d for _i, d, _l in shown if d.has_pixels and outline_step not in d.outlines]
        if missing:
            for drawing in missing:
                if drawing.contours is None:
                    drawing.contours = _contours(drawing.overlay.mask.mask)
            shapes = [(d.contours, d.overlay.mask.x0, d.overlay.mask.y0) for d in missing]
            for drawing, path in zip(missing, _outline_paths(shapes, 0.7 * outline_step), strict=True):
                drawing.outlines[outline_step] = path

        opacity = self.opacity
        selected_opacity = min(1.0, opacity + SELECTED_OPACITY_BOOST)
        no_brush = Qt.BrushStyle.NoBrush
        # As QGraphicsPixmapItem's default (fast) transformation mode: fills are drawn nearest-neighbour.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        for instance_id, drawing, layout in shown:
            if drawing.has_pixels:
                target, image = drawing.fill(step)
                painter.setOpacity(selected_opacity if instance_id in self._selected else opacity)
                painter.drawImage(target, image)
                painter.setOpacity(1.0)
                painter.setBrush(no_brush)
                painter.setPen(drawing.pen)
                painter.drawPath(drawing.outlines[outline_step])
            if self.show_boxes:
                painter.setBrush(no_brush)
                painter.setPen(drawing.box_pen)
                painter.drawRect(drawing.box_rect)
            if layout is not None:
                # At screen size whatever the zoom, as an item that ignores transformations.
                text_layout, width, height = layout
                anchor = transform.map(QPointF(drawing.overlay.box[0], drawing.overlay.box[1]))
                painter.setWorldTransform(QTransform.fromTranslate(anchor.x(), anchor.y()))
                painter.fillRect(QRectF(-2, -1, width + 4, height + 2), drawing.background)
                painter.setPen(captions.pen)
                text_layout.draw(painter, QPointF(0, 0))
                painter.setWorldTransform(transform)


def _view_scale(transform: QTransform) -> float:
    """Screen pixels per scene pixel under ``transform`` (a zoom, maybe with a translation)."""
    return max(math.hypot(transform.m11(), transform.m12()), 1e-9)


def _subsampling(scale: float) -> int:
    """The largest power of two ``step`` with ``step * scale <= 1``: a fill subsampled by ``step`` still has
    at least one pixel per screen pixel."""
    step = 1
    while step * 2 * scale <= 1.0 and step < 1 << 12:
        step *= 2
    return step


def _fill_image(
    mask: np.ndarray, x0: int, y0: int, color: QColor, step: int
) -> tuple[QRectF, QImage, np.ndarray]:
    """The mask in ``color`` (transparent elsewhere) at one pixel per ``step`` x ``step`` block, sampled at
    the block's centre (blocks whose centre lies outside the crop are left out), the scene rectangle it
    covers, and the pixel array the image is a view of (keep it with the image)."""
    if step > 1:
        mask = mask[step // 2 :: step, step // 2 :: step]
    h, w = mask.shape
    # Premultiplied ARGB, the format painting uses (nothing is converted when drawn): 0 or the colour.
    pixels = mask.astype(np.uint32) * np.uint32(_premultiplied(color))
    image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
    return QRectF(x0, y0, w * step, h * step), image, pixels


def _premultiplied(color: QColor) -> int:
    """``color`` as a premultiplied ARGB32 pixel value (as Qt rounds it)."""
    if color.alpha() == 255:
        return color.rgba()
    pixel = QImage(1, 1, QImage.Format.Format_ARGB32)
    pixel.setPixel(0, 0, color.rgba())
    return pixel.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied).pixel(0, 0)


def _same_drawing(old: Overlay | None, new: Overlay) -> bool:
    """Whether ``new`` draws exactly like ``old`` (masks compare by identity: decoded masks are cached)."""
    return (
        old is not None
        and old.mask is new.mask
        and old.box == new.box
        and old.color == new.color
        and old.label == new.label
        and old.score == new.score
    )


# QPainterPath's QDataStream form: element count, then (type, x, y) per element, the index where the last
# subpath starts and the fill rule. Filled in by numpy for a whole batch of paths, read back by Qt one path
# after the other from one stream: a path costs no Python loop over its vertices.
_PATH_ELEMENT = np.dtype([("type", "<i4"), ("xy", "<f8", (2,))])
_PATH_INTS = struct.Struct("<i")
_PATH_TAIL = struct.Struct("<ii")
_MOVE_TO, _LINE_TO = 0, 1
_ODD_EVEN_FILL = 0


def _contours(mask: np.ndarray) -> Sequence[np.ndarray]:
    """The mask's contours, holes included, in crop pixels (OpenCV's ``(n, 1, 2)`` int32 arrays)."""
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    return contours


def _outline_path(mask: np.ndarray, x0: int, y0: int, tolerance: float = 0.7) -> QPainterPath:
    """The mask's outline as a path in image pixels: see :func:`_outline_paths`."""
    return _outline_paths([(_contours(mask), x0, y0)], tolerance)[0]


def _outline_paths(
    shapes: Sequence[tuple[Sequence[np.ndarray], int, int]], tolerance: float = 0.7
) -> list[QPainterPath]:
    """For each ``(contours, x0, y0)`` of a mask crop at ``(x0, y0)``, its outline as a path in image
    pixels: one closed polygon per contour, as ``addPolygon`` + ``closeSubpath`` would make it.

    Contours run through the centres of the edge pixels (hence ``+ 0.5``), simplified to within
    ``tolerance`` pixels: a large mask keeps a few dozen vertices instead of thousands, which keeps the
    overlay of an image with many instances well under a frame to build.
    """
    polygons: list[np.ndarray] = []  # all paths' polygons, each closed (its first point repeated)
    origins: list[tuple[float, float]] = []  # per polygon: where its pixel (0, 0) lies, in image pixels
    layout: list[tuple[int, int, int]] = []  # per path: (first element, element count, last subpath start)
    count = 0
    for contours, x0, y0 in shapes:
        first = last = count
        for contour in contours:
            polygon = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
            if len(polygon) < 2:
                continue  # one point draws nothing (addPolygon + closeSubpath leave a lone move)
            polygons.append(np.concatenate((polygon, polygon[:1])))
            origins.append((x0 + 0.5, y0 + 0.5))
            last = count
            count += len(polygon) + 1
        layout.append((first, count - first, last - first))
    if not polygons:
        return [QPainterPath() for _ in shapes]
    sizes = [len(p) for p in polygons]
    elements = np.empty(count, dtype=_PATH_ELEMENT)
    xy = elements["xy"]
    xy[:] = np.concatenate(polygons)
    xy += np.repeat(np.array(origins), sizes, axis=0)
    elements["type"] = _LINE_TO
    elements["type"][np.cumsum([0, *sizes[:-1]])] = _MOVE_TO
    raw = elements.tobytes()
    size = _PATH_ELEMENT.itemsize
    parts = []
    for first, n, last in layout:
        if n:
            tail = _PATH_TAIL.pack(last, _ODD_EVEN_FILL)
            parts += (_PATH_INTS.pack(n), raw[first * size : (first + n) * size], tail)
        else:
            parts.append(_PATH_INTS.pack(0))  # the empty path
    data = QByteArray(b"".join(parts))  # kept referenced: the stream reads from it
    stream = QDataStream(data)
    stream.setByteOrder(QDataStream.ByteOrder.LittleEndian)
    paths = []
    for _ in shapes:
        path = QPainterPath()
        stream >> path
        paths.append(path)
    return paths
