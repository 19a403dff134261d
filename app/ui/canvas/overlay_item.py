"""The instance overlay: one scene item above the image that paints every instance.

Each instance is drawn as: the filled mask (its colour, at the overlay opacity), its outline, an optional
box and an optional caption (category, score) that keeps its size at any zoom. What the item draws for an
instance (:class:`InstanceDrawing`) is built on first paint and kept while the instance is unchanged, so an
instance outside the exposed area costs nothing, and after an edit only the edited instance is rebuilt and
repainted. Zoomed out, a fill is drawn from its mask subsampled to no less than one pixel per screen pixel
(what nearest-neighbour drawing of the full crop shows anyway) and an outline is simplified to within a
quarter of a screen pixel, at a fraction of the work.

Scene coordinates are original-image pixels, so a mask crop at ``(x0, y0)`` is placed at exactly that
scene position and boxes are drawn as given (xyxy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPainterPath, QPen, QTextLayout, QTransform
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.project.settings import DEFAULT_OVERLAY_OPACITY
from app.session.overlay import Overlay
from app.ui.canvas.outline import FULL_RESOLUTION_TOLERANCE, contours, outline_paths

SELECTED_OPACITY_BOOST = 0.35  # a selected instance's fill is this much more opaque
# Screen pixels around an instance's crop and box that its outline (2 px) and box pen (1.5 px) may touch,
# antialiasing included; and around a caption's background.
_PEN_MARGIN = 3.0
_CAPTION_MARGIN = 2.0
_CAPTION_LAYOUTS_MAX = 4096
# Past this many changed instances, one repaint of the whole overlay is cheaper than one per instance.
_PARTIAL_REPAINT_MAX = 32
#: an instance whose box is smaller than this on screen (screen pixels, longer side) has no caption: zoomed
#: far out over hundreds of small objects (a large image), captions would hide the image and each other
CAPTION_MIN_SCREEN_SIZE = 12.0


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


class InstanceDrawing:
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
        if overlay.crowd:
            self.pen.setStyle(Qt.PenStyle.DashLine)  # a crowd region's outline: not an object's
        elif overlay.unsure:
            self.pen.setStyle(Qt.PenStyle.DotLine)  # the model was unsure of it: worth a closer look
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
        # The caption under the overlay's caption settings (show category names, show scores):
        # (settings, layout) with layout = (QTextLayout, width, height), or None for no caption.
        self.caption: tuple[tuple[bool, bool], tuple[QTextLayout, float, float] | None] | None = None
        # Filled in when first painted: the mask's contours, and the outline path made of them for each
        # outline step (simplified to within FULL_RESOLUTION_TOLERANCE x step pixels: see OverlayItem.paint).
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

    def screen_size(self, scale: float) -> float:
        """The longer side of the instance's box on screen, at ``scale`` screen pixels per image pixel."""
        return max(self.box_rect.width(), self.box_rect.height()) * scale

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
            found = self._fills[step] = fill_image(crop.mask, crop.x0, crop.y0, self.overlay.color, step)
        return found[0], found[1]


class OverlayItem(QGraphicsItem):
    """The instances of the image shown, painted in order above it (selected ones on top), with what the
    view decides about them: selection, hidden instances, fill opacity, boxes, category names and scores.

    Its drawings live while it is in a scene: taken out of one (no image shown), it keeps the overlays it
    is given but draws and builds nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._bounds = QRectF()
        self._drawings: dict[int, InstanceDrawing] = {}  # drawn instances, in drawing order
        self._overlays: dict[int, Overlay] = {}
        self._captions = _Captions()
        self._selected: set[int] = set()
        self._hidden: set[int] = set()
        # Not QGraphicsItem's opacity, which would fade outlines and captions too.
        self.fill_opacity = DEFAULT_OVERLAY_OPACITY  # until a project is open; then its setting
        self.show_boxes = False
        self.show_category_names = True
        self.show_scores = True
        # exposedRect tells paint() which part of the view is being redrawn (a brush move repaints a few
        # pixels: only the instances there are drawn).
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    # ------------------------------------------------------------------------------------------- content
    def cover(self, image_rect: QRectF) -> None:
        """Cover a new image of ``image_rect`` (scene pixels): its instances are not known yet."""
        self.clear()
        # Captions keep their screen size and may stick out of the image: the item reaches well beyond.
        margin = 10.0 * max(image_rect.width(), image_rect.height()) + 1000.0
        self.prepareGeometryChange()
        self._bounds = image_rect.adjusted(-margin, -margin, margin, margin)

    def clear(self) -> None:
        """Forget every instance (a new image, or none)."""
        self._drawings, self._overlays = {}, {}
        self.update()

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Replace the instances drawn."""
        # Instances whose overlay did not change keep their drawing (outline, fill images): after an edit
        # only the edited instance is rebuilt and only its area is repainted.
        old = self._drawings
        previous = list(old)
        self._overlays = {o.instance_id: o for o in overlays}
        self._drawings = {}
        if self.scene() is None:
            return
        changed = []
        for overlay in overlays:
            i = overlay.instance_id
            drawing = old.pop(i, None)
            if drawing is None or not _same_drawing(drawing.overlay, overlay):
                if drawing is not None:
                    changed.append(drawing)
                drawing = InstanceDrawing(overlay)
                changed.append(drawing)
            else:
                drawing.overlay = overlay  # draws the same: same mask, box, colour and caption
            self._drawings[i] = drawing
        changed.extend(old.values())  # removed
        # The order decides what is drawn over what: if it changed, everything is repainted.
        before = set(previous)
        reordered = [i for i in previous if i in self._drawings] != [i for i in self._drawings if i in before]
        self._repaint(None if reordered or len(changed) > _PARTIAL_REPAINT_MAX else changed)

    def instance_ids(self) -> list[int]:
        """The instances drawn now, in drawing order."""
        return list(self._drawings)

    def drawing(self, instance_id: int) -> InstanceDrawing | None:
        """What is kept for drawing the instance (its render cache), or ``None`` when it is not drawn."""
        return self._drawings.get(instance_id)

    # ------------------------------------------------------------------------------------------- display
    def set_fill_opacity(self, opacity: float) -> None:
        self.fill_opacity = min(max(opacity, 0.0), 1.0)
        self._repaint()

    def set_show_boxes(self, show: bool) -> None:
        self.show_boxes = show
        self._repaint()

    def set_show_category_names(self, show: bool) -> None:
        self.show_category_names = show
        self._repaint()

    def set_show_scores(self, show: bool) -> None:
        self.show_scores = show
        self._repaint()

    def set_selection(self, instance_ids: Iterable[int]) -> None:
        """Highlight these instances (more opaque fill, drawn on top)."""
        selected = set(instance_ids)
        changed = selected ^ self._selected
        self._selected = selected
        self._repaint([self._drawings[i] for i in changed if i in self._drawings])

    def selection(self) -> set[int]:
        return set(self._selected)

    def set_hidden(self, instance_ids: Iterable[int]) -> None:
        """Leave these instances out of the drawing."""
        hidden = set(instance_ids)
        changed = hidden ^ self._hidden
        self._hidden = hidden
        self._repaint([self._drawings[i] for i in changed if i in self._drawings])

    def is_visible(self, instance_id: int) -> bool:
        return instance_id in self._drawings and instance_id not in self._hidden

    def instance_at(self, point: QPointF) -> int | None:
        """The topmost shown instance whose mask covers the scene point, or ``None``."""
        x, y = int(np.floor(point.x())), int(np.floor(point.y()))
        for instance_id in reversed(self._drawing_order()):  # topmost first
            mask = self._overlays[instance_id].mask
            mx, my = x - mask.x0, y - mask.y0
            if 0 <= my < mask.mask.shape[0] and 0 <= mx < mask.mask.shape[1] and mask.mask[my, mx]:
                return instance_id
        return None

    # -------------------------------------------------------------------------------------------- painting
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._bounds

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        """Paint the instances that reach into the exposed area (scene pixels), bottom first."""
        transform = painter.worldTransform()
        scale = view_scale(transform)
        # Subsampling is chosen for device pixels (two per logical pixel on a high-DPI screen).
        step = subsampling(scale * painter.device().devicePixelRatioF())
        outline_step = max(1, step // 2)
        exposed = option.exposedRect
        ex_left, ex_right = exposed.left(), exposed.right()
        ex_top, ex_bottom = exposed.top(), exposed.bottom()
        captions = self._captions
        shown = []
        for instance_id in self._drawing_order():
            drawing = self._drawings.get(instance_id)
            if drawing is None:
                continue
            layout = self._caption(drawing) if drawing.screen_size(scale) >= CAPTION_MIN_SCREEN_SIZE else None
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
            shapes = []
            for drawing in missing:
                traced = drawing.contours
                if traced is None:
                    traced = drawing.contours = contours(drawing.overlay.mask.mask)
                shapes.append((traced, drawing.overlay.mask.x0, drawing.overlay.mask.y0))
            tolerance = FULL_RESOLUTION_TOLERANCE * outline_step
            for drawing, path in zip(missing, outline_paths(shapes, tolerance), strict=True):
                drawing.outlines[outline_step] = path

        opacity = self.fill_opacity
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

    # ------------------------------------------------------------------------------------------ internals
    def _drawing_order(self) -> list[int]:
        """Shown instances, bottom first: the overlays' order, selected ones on top."""
        shown = [i for i in self._overlays if i not in self._hidden]
        if self._selected:
            shown.sort(key=lambda i: i in self._selected)  # stable: the order is kept within each part
        return shown

    def _caption_text(self, overlay: Overlay) -> str:
        parts = [overlay.category_name] if self.show_category_names else []
        if overlay.crowd:
            parts.insert(0, "crowd")
        if overlay.unsure:
            parts.insert(0, "unsure")
        if self.show_scores and overlay.score is not None:
            parts.append(f"{overlay.score:.2f}")
        return " ".join(parts)

    def _caption(self, drawing: InstanceDrawing) -> tuple[QTextLayout, float, float] | None:
        """The laid-out caption of ``drawing`` under the current settings, or None when it has none."""
        settings = (self.show_category_names, self.show_scores)
        cached = drawing.caption
        if cached is None or cached[0] != settings:
            text = self._caption_text(drawing.overlay)
            cached = drawing.caption = (settings, self._captions.layout(text) if text else None)
        return cached[1]

    def _view_scale(self) -> float:
        """Screen pixels per scene pixel in the views showing the item (the smallest: the widest margins)."""
        scene = self.scene()
        views = scene.views() if scene is not None else []
        return min((view_scale(view.transform()) for view in views), default=1.0)

    def _repaint(self, drawings: Iterable[InstanceDrawing] | None = None) -> None:
        """Schedule a repaint of the whole overlay, or of the area of ``drawings`` (old and new ones)."""
        if self.scene() is None:
            return
        if drawings is None:
            self.update()
            return
        scale = self._view_scale()
        for drawing in drawings:
            layout = self._caption(drawing)
            left, top, right, bottom = drawing.extent(scale, None if layout is None else layout[1:])
            self.update(QRectF(left, top, right - left, bottom - top))


def view_scale(transform: QTransform) -> float:
    """Screen pixels per scene pixel under ``transform`` (a zoom, maybe with a translation)."""
    return max(math.hypot(transform.m11(), transform.m12()), 1e-9)


def subsampling(scale: float) -> int:
    """The largest power of two ``step`` with ``step * scale <= 1``: a fill subsampled by ``step`` still has
    at least one pixel per screen pixel."""
    step = 1
    while step * 2 * scale <= 1.0 and step < 1 << 12:
        step *= 2
    return step


def fill_image(
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
        and old.category_name == new.category_name
        and old.score == new.score
        and old.crowd == new.crowd
        and old.unsure == new.unsure
    )
