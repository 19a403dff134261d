"""The canvas: a QGraphicsView showing the image with its instance overlay.

Scene coordinates are original-image pixels (pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``). The view
zooms, pans and hands input to the active tool; the instance overlay is one item above the image that
builds, caches and paints what it draws (:mod:`app.ui.canvas.overlay_item`).

Interaction: the mouse wheel zooms (with Ctrl it changes the brush size instead: ``brushWheel``); the
middle button, or the left button while Space is held, pans. Every other press, move and release goes to
the active editing tool (:mod:`app.ui.tools`) in scene coordinates; without a tool a click selects.
A right click on an instance asks for its menu (``instanceMenuRequested``). Holding X shows the bare
image (every overlay hidden) until the key is let go.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QContextMenuEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

from app.session.overlay import Overlay
from app.session.views import EditingTool
from app.ui.canvas.overlay_item import OverlayItem
from app.ui.canvas.tiled_image_item import TiledImageItem
from app.workers.view_tiles import LargeImageTiles

ZOOM_STEP = 1.25
# Held, the image is shown without overlays. Not a menu shortcut (a shortcut fires once, it is not
# "held"); View ▸ Hide all overlays (Shift+X) is the toggle.
HIDE_OVERLAYS_HELD_KEY = "X"
_HELD_KEY = Qt.Key.Key_X


class Canvas(QGraphicsView):
    """Image + overlay viewer. ``instanceClicked(id)`` fires when a mask is clicked and no tool is set;
    ``brushWheel(steps)`` when the wheel turns with Ctrl held (+1 per notch away from the user)."""

    instanceClicked = Signal(int)
    brushWheel = Signal(int)
    instanceMenuRequested = Signal(int, QPoint)  # instance id, global position of the right click
    zoomChanged = Signal(float)  # screen pixels per image pixel

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
        # a QGraphicsPixmapItem, or a TiledImageItem for a large image
        self._image_item: QGraphicsItem | None = None
        self._message_item: QGraphicsSimpleTextItem | None = None
        # One overlay for the canvas's life: in the scene while an image is shown, its view settings
        # (selection, hidden instances, opacity, captions) kept from one image to the next.
        self.overlay = OverlayItem()
        self.tool: EditingTool | None = None  # the active editing tool, which gets the mouse and keys
        self._space_held = False
        self._pan_from: QPoint | None = None
        self._overlays_hidden = False  # View ▸ Hide all overlays
        self._overlays_peek = False  # the hide key held down

    # ------------------------------------------------------------------------------------------- content
    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image`` (fit to the view), or an empty canvas with ``message`` (e.g. why it failed)."""
        scene = self._clear()
        if image is None or image.isNull():
            self._message_item = scene.addSimpleText(message or "No image")
            self._message_item.setBrush(QBrush(QColor(230, 230, 230)))
            scene.setSceneRect(self._message_item.boundingRect().adjusted(-20, -20, 20, 20))
            self.resetTransform()
            return
        pixmap_item = scene.addPixmap(QPixmap.fromImage(image))
        pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # Resampling a 12-megapixel photo on every repaint costs tens of milliseconds; cached at screen
        # resolution, a repaint (a brush move, an overlay change) is a copy. Re-rendered once per zoom.
        pixmap_item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._show_item(pixmap_item, image.height(), image.width())

    def set_large_image(self, tiles: LargeImageTiles) -> None:
        """Show a large image from its tiles (fit to the view): only the tiles in view are ever decoded."""
        scene = self._clear()
        item = TiledImageItem(tiles)
        scene.addItem(item)
        self._show_item(item, *tiles.size)

    def large_image(self) -> TiledImageItem | None:
        """The tiled image shown, when the image is a large one."""
        return self._image_item if isinstance(self._image_item, TiledImageItem) else None

    def _clear(self) -> QGraphicsScene:
        scene = self.scene()
        if self.overlay.scene() is not None:
            scene.removeItem(self.overlay)  # kept: clear() deletes what is in the scene
        scene.clear()
        self.overlay.clear()
        self._image_item = self._message_item = None
        return scene

    def _show_item(self, item: QGraphicsItem, height: int, width: int) -> None:
        self._image_item = item
        item.setZValue(-1)
        rect = QRectF(0, 0, width, height)
        self.overlay.cover(rect)
        self.scene().addItem(self.overlay)
        self.scene().setSceneRect(rect)
        self.fit()

    def set_message(self, message: str) -> None:
        """Replace the canvas content by a message (while loading, or when the file is unusable)."""
        self.set_image(None, message)

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Replace the instance overlay (drawn only while an image is shown)."""
        self.overlay.set_overlays(overlays)

    def instance_ids(self) -> list[int]:
        """The instances drawn now, in drawing order."""
        return self.overlay.instance_ids()

    def has_image(self) -> bool:
        return self._image_item is not None

    def message(self) -> str:
        return self._message_item.text() if self._message_item is not None else ""

    # ------------------------------------------------------------------------------------------- display
    @property
    def opacity(self) -> float:
        """The opacity of the instances' fills (a selected one is more opaque)."""
        return self.overlay.fill_opacity

    @property
    def show_boxes(self) -> bool:
        return self.overlay.show_boxes

    @property
    def show_category_names(self) -> bool:
        return self.overlay.show_category_names

    @property
    def show_scores(self) -> bool:
        return self.overlay.show_scores

    def set_opacity(self, opacity: float) -> None:
        self.overlay.set_fill_opacity(opacity)

    def set_show_boxes(self, show: bool) -> None:
        self.overlay.set_show_boxes(show)

    def set_show_category_names(self, show: bool) -> None:
        self.overlay.set_show_category_names(show)

    def set_show_scores(self, show: bool) -> None:
        self.overlay.set_show_scores(show)

    def set_overlays_hidden(self, hidden: bool) -> None:
        """Show the bare image (``True``) or the overlays again; the view setting, not an edit."""
        self._overlays_hidden = hidden
        self._update_overlay_visibility()

    def overlays_shown(self) -> bool:
        return self.overlay.isVisible()

    def _update_overlay_visibility(self) -> None:
        self.overlay.setVisible(not (self._overlays_hidden or self._overlays_peek))

    def select_instance(self, instance_id: int | None) -> None:
        """Highlight one instance (more opaque fill), or none."""
        self.set_selection([] if instance_id is None else [instance_id])

    def set_selection(self, instance_ids: Iterable[int]) -> None:
        """Highlight these instances (more opaque fill, drawn on top)."""
        self.overlay.set_selection(instance_ids)

    def selection(self) -> set[int]:
        return self.overlay.selection()

    def set_hidden(self, instance_ids: Iterable[int]) -> None:
        """Hide these instances from view (a view setting: nothing is edited)."""
        self.overlay.set_hidden(instance_ids)

    def is_visible(self, instance_id: int) -> bool:
        return self.overlay.is_visible(instance_id)

    def instance_at(self, point: QPointF) -> int | None:
        """The topmost shown instance whose mask covers the scene point, or ``None``."""
        return self.overlay.instance_at(point)

    def zoom_in(self) -> None:
        self.scale(ZOOM_STEP, ZOOM_STEP)
        self.zoomChanged.emit(self.zoom_factor())

    def zoom_out(self) -> None:
        self.scale(1 / ZOOM_STEP, 1 / ZOOM_STEP)
        self.zoomChanged.emit(self.zoom_factor())

    def fit(self) -> None:
        """Fit the whole image in the view."""
        if self._image_item is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoomChanged.emit(self.zoom_factor())

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
            hit = self.instance_at(scene_pos)
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

    def event(self, event: QEvent) -> bool:
        # A key some menu action has as its shortcut still reaches the tool when the tool needs it now
        # (Delete removes a vertex while refining rather than the instance).
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and self.tool is not None
            and isinstance(event, QKeyEvent)
            and self.tool.takes_key(event)
        ):
            event.accept()
            return True
        return super().event(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt override
        if self._image_item is None:
            return
        hit = self.instance_at(self.mapToScene(event.pos()))
        if hit is not None:
            self.instanceMenuRequested.emit(hit, event.globalPos())
            event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = True
            return
        if event.key() == _HELD_KEY and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            if not event.isAutoRepeat():
                self._overlays_peek = True
                self._update_overlay_visibility()
            return
        if self.tool is not None and self.tool.key_press(event):
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_held = False
            return
        if event.key() == _HELD_KEY and not event.isAutoRepeat():
            self._overlays_peek = False
            self._update_overlay_visibility()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if self.tool is not None:
            self.tool.leave()
        super().leaveEvent(event)
