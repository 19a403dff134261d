"""The canvas: a QGraphicsView showing the image with its instance overlay.

Scene coordinates are original-image pixels (pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``), so a
mask crop at ``(x0, y0)`` is placed at exactly that scene position and boxes are drawn as given (xyxy).
Each instance is a group of: the filled mask (its colour, at the overlay opacity), its outline, an
optional box and an optional caption (category, score) that keeps its size at any zoom.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsItemGroup,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

from app.views.overlay import Overlay

ZOOM_STEP = 1.25


class _Caption(QGraphicsSimpleTextItem):
    """Text on a filled background, drawn at screen size whatever the zoom."""

    def __init__(self, text: str, color: QColor, parent: QGraphicsItem | None = None) -> None:
        super().__init__(text, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setBrush(QBrush(Qt.GlobalColor.white))
        font = QFont()
        font.setPointSize(9)
        self.setFont(font)
        self._background = QColor(color).darker(180)
        self._background.setAlpha(210)

    def paint(self, painter: QPainter, option, widget=None) -> None:  # noqa: ANN001 - Qt signature
        painter.fillRect(self.boundingRect().adjusted(-2, -1, 2, 1), self._background)
        super().paint(painter, option, widget)


class Canvas(QGraphicsView):
    """Image + overlay viewer. ``instanceClicked(id)`` fires when a mask is clicked."""

    instanceClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self._image_item: QGraphicsPixmapItem | None = None
        self._message_item: QGraphicsSimpleTextItem | None = None
        self._groups: dict[int, QGraphicsItemGroup] = {}
        self._fills: dict[int, QGraphicsPixmapItem] = {}
        self._boxes: list[QGraphicsRectItem] = []
        self._captions: dict[int, _Caption] = {}
        self._overlays: dict[int, Overlay] = {}
        self._selected: int | None = None
        self.opacity = 0.45
        self.show_boxes = False
        self.show_labels = True
        self.show_scores = True

    # ------------------------------------------------------------------------------------------- content
    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image`` (fit to the view), or an empty canvas with ``message`` (e.g. why it failed)."""
        scene = self.scene()
        scene.clear()
        self._image_item = self._message_item = None
        self._groups, self._fills, self._captions, self._boxes, self._overlays = {}, {}, {}, [], {}
        if image is None or image.isNull():
            self._message_item = scene.addSimpleText(message or "No image")
            self._message_item.setBrush(QBrush(QColor(230, 230, 230)))
            scene.setSceneRect(self._message_item.boundingRect().adjusted(-20, -20, 20, 20))
            self.resetTransform()
            return
        self._image_item = scene.addPixmap(QPixmap.fromImage(image))
        self._image_item.setZValue(-1)
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene.setSceneRect(QRectF(0, 0, image.width(), image.height()))
        self.fit()

    def set_message(self, message: str) -> None:
        """Replace the canvas content by a message (while loading, or when the file is unusable)."""
        self.set_image(None, message)

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Replace the instance overlay."""
        scene = self.scene()
        for group in self._groups.values():
            scene.removeItem(group)
        self._groups, self._fills, self._captions, self._boxes = {}, {}, {}, []
        self._overlays = {o.instance_id: o for o in overlays}
        if self._image_item is None:
            return
        for overlay in overlays:
            self._groups[overlay.instance_id] = self._build(overlay)
        self._apply_visibility()

    def instance_ids(self) -> list[int]:
        """The instances drawn now, in drawing order."""
        return list(self._groups)

    def has_image(self) -> bool:
        return self._image_item is not None

    def message(self) -> str:
        return self._message_item.text() if self._message_item is not None else ""

    # ------------------------------------------------------------------------------------------- display
    def set_opacity(self, opacity: float) -> None:
        self.opacity = min(max(opacity, 0.0), 1.0)
        for fill in self._fills.values():
            fill.setOpacity(self.opacity)

    def set_show_boxes(self, show: bool) -> None:
        self.show_boxes = show
        self._apply_visibility()

    def set_show_labels(self, show: bool) -> None:
        self.show_labels = show
        self._apply_visibility()

    def set_show_scores(self, show: bool) -> None:
        self.show_scores = show
        self._apply_visibility()

    def select_instance(self, instance_id: int | None) -> None:
        """Highlight one instance (fully opaque fill), or none."""
        self._selected = instance_id
        for i, fill in self._fills.items():
            fill.setOpacity(min(1.0, self.opacity + 0.35) if i == instance_id else self.opacity)

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
        if event.angleDelta().y() > 0:
            self.zoom_in()
        elif event.angleDelta().y() < 0:
            self.zoom_out()

    def mousePressEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            hit = self._instance_at(self.mapToScene(event.position().toPoint()))
            if hit is not None:
                self.instanceClicked.emit(hit)
        super().mousePressEvent(event)

    # ------------------------------------------------------------------------------------------ internals
    def _instance_at(self, point: QPointF) -> int | None:
        x, y = int(np.floor(point.x())), int(np.floor(point.y()))
        for instance_id in reversed(list(self._overlays)):  # topmost first
            mask = self._overlays[instance_id].mask
            mx, my = x - mask.x0, y - mask.y0
            if 0 <= my < mask.mask.shape[0] and 0 <= mx < mask.mask.shape[1] and mask.mask[my, mx]:
                return instance_id
        return None

    def _build(self, overlay: Overlay) -> QGraphicsItemGroup:
        scene = self.scene()
        group = QGraphicsItemGroup()
        scene.addItem(group)
        crop = overlay.mask
        h, w = crop.mask.shape
        if h and w:
            rgba = np.zeros((h, w, 4), dtype=np.uint8)
            rgba[crop.mask] = (overlay.color.red(), overlay.color.green(), overlay.color.blue(), 255)
            image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
            fill = QGraphicsPixmapItem(QPixmap.fromImage(image))
            fill.setPos(crop.x0, crop.y0)
            fill.setOpacity(self.opacity)
            group.addToGroup(fill)
            self._fills[overlay.instance_id] = fill
            outline = QGraphicsPathItem(_outline_path(crop.mask, crop.x0, crop.y0))
            pen = QPen(overlay.color, 2)
            pen.setCosmetic(True)  # 2 screen pixels at any zoom
            outline.setPen(pen)
            group.addToGroup(outline)
        x1, y1, x2, y2 = overlay.box
        box = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1))
        pen = QPen(overlay.color, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        box.setPen(pen)
        group.addToGroup(box)
        self._boxes.append(box)
        caption = _Caption(self._caption_text(overlay), overlay.color)
        caption.setPos(x1, y1)
        group.addToGroup(caption)
        self._captions[overlay.instance_id] = caption
        return group

    def _caption_text(self, overlay: Overlay) -> str:
        parts = [overlay.label] if self.show_labels else []
        if self.show_scores and overlay.score is not None:
            parts.append(f"{overlay.score:.2f}")
        return " ".join(parts)

    def _apply_visibility(self) -> None:
        for box in self._boxes:
            box.setVisible(self.show_boxes)
        for instance_id, caption in self._captions.items():
            caption.setText(self._caption_text(self._overlays[instance_id]))
            caption.setVisible(bool(caption.text()))


def _outline_path(mask: np.ndarray, x0: int, y0: int) -> QPainterPath:
    """The mask's contours (holes included) as a path in image pixels.

    Contours run through the centres of the edge pixels (hence ``+ 0.5``), simplified to within 0.7 px:
    a large mask keeps a few dozen vertices instead of thousands, which keeps the overlay of an image
    with many instances well under a frame to build.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for contour in contours:
        points = cv2.approxPolyDP(contour, 0.7, True).reshape(-1, 2).astype(np.float64) + 0.5
        path.addPolygon(QPolygonF([QPointF(x0 + px, y0 + py) for px, py in points.tolist()]))
        path.closeSubpath()
    return path
