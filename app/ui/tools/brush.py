"""Brush and eraser: paint onto (or erase from) the selected instance's mask with a round brush.

While the button is down the stroke is only a preview path (appending a point is all a move event costs,
whatever the image size); on release the stroke is rasterised once on its own bounding box and becomes
one undo command. With nothing selected the brush draws a new instance of the current category.

The brush keeps its size on screen at any zoom (the editor converts it to image pixels); its cursor is a
circle of the size it paints, and while [ / ] or Ctrl+wheel resize it, the size in image pixels is
written next to the circle for a moment.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsPathItem, QGraphicsSimpleTextItem

from app.project.mask_ops import combine, stroke_mask
from app.project.records import InstanceRecord
from app.session import commands
from app.session.editor import Editor
from app.session.overlay import instance_color
from app.ui.canvas.view import Canvas
from app.ui.tools.base import Tool, alive
from maskrcnn_core.masks import rle_to_mask

SIZE_LABEL_MS = 900  # how long the size stays written next to the cursor after a resize


class BrushTool(Tool):
    name = "brush"
    label = "Brush"
    cursor = Qt.CursorShape.CrossCursor
    erase = False

    def __init__(self, editor: Editor, canvas: Canvas) -> None:
        super().__init__(editor, canvas)
        self._points: list[tuple[float, float]] = []
        self._target: InstanceRecord | None = None
        self._path_item: QGraphicsPathItem | None = None
        self._cursor: QGraphicsEllipseItem | None = None
        self._last_pos: QPointF | None = None
        self._size_label: QGraphicsSimpleTextItem | None = None
        self._label_timer = QTimer(editor)
        self._label_timer.setSingleShot(True)
        self._label_timer.setInterval(SIZE_LABEL_MS)
        self._label_timer.timeout.connect(self._hide_size_label)
        editor.brushSizeChanged.connect(self._resized)
        canvas.zoomChanged.connect(lambda _scale: self._update_cursor())

    @property
    def stroking(self) -> bool:
        return bool(self._points)

    def cancel(self) -> None:
        self._points = []
        self._target = None
        self._path_item = self._cursor = self._size_label = None
        self.clear_items()

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.editor.image_size() is None:
            return
        selected = self.editor.selected_records()
        if len(selected) > 1:
            self.editor.message.emit(f"{self.label}: select one instance (it has {len(selected)} selected)")
            return
        if not selected and self.erase:
            self.editor.message.emit("Eraser: select the instance to erase from first")
            return
        self._target = selected[0] if selected else None
        self._points = [(pos.x(), pos.y())]
        color = self._color()
        pen = QPen(color, self.editor.brush_size)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self._path_item = QGraphicsPathItem()
        self._path_item.setPen(pen)
        self._path_item.setOpacity(0.6)
        self.add_item(self._path_item)
        self._update_path()

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._last_pos = pos
        self._update_cursor()
        if not self._points:
            return
        x, y = self._points[-1]
        if (pos.x() - x) ** 2 + (pos.y() - y) ** 2 < 0.25:  # under half a pixel: nothing new to paint
            return
        self._points.append((pos.x(), pos.y()))
        self._update_path()

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self._points:
            return
        points, target = self._points, self._target
        self.cancel()
        self._finish(points, target)
        self._update_cursor()

    def leave(self) -> None:
        if self._cursor is not None:
            self._cursor.hide()

    def _finish(self, points: list[tuple[float, float]], target: InstanceRecord | None) -> None:
        editor = self.editor
        size = editor.image_size()
        if size is None:  # the image went away during the stroke
            return
        stroke = stroke_mask(points, editor.brush_size / 2, size)
        if target is None:
            command = commands.add_instance(
                editor.context, editor.image_id, stroke, editor.category_for_new(), "Brush"
            )
        else:
            mask = combine(rle_to_mask(target.rle), stroke, add=not self.erase)
            command = commands.edit_mask(editor.context, target, mask, self.label)
        editor.push(command)

    def _color(self) -> QColor:
        if self.erase:
            return QColor(255, 255, 255)
        if self._target is not None:  # as the canvas draws it (by category or by instance)
            drawing = self.canvas.overlay.drawing(self._target.id)
            return drawing.overlay.color if drawing is not None else instance_color(self._target.id)
        category = self.editor.current_category
        if category >= 0:
            return QColor(self.editor.document.category(category).color)
        return QColor(255, 200, 0)

    def _update_path(self) -> None:
        if not alive(self._path_item):
            return
        path = QPainterPath(QPointF(*self._points[0]))
        if len(self._points) == 1:
            path.lineTo(QPointF(*self._points[0]))  # a round cap on a zero-length line draws a dot
        for point in self._points[1:]:
            path.lineTo(QPointF(*point))
        self._path_item.setPath(path)

    def _update_cursor(self) -> None:
        """An outline of the brush under the mouse, at its true size in image pixels."""
        if self._last_pos is None or self.editor.tool is not self:
            return
        if not alive(self._cursor):
            self._cursor = QGraphicsEllipseItem()
            pen = QPen(QColor(255, 255, 255), 1.5)
            pen.setCosmetic(True)
            self._cursor.setPen(pen)
            self.add_item(self._cursor)
        r = self.editor.brush_size / 2
        self._cursor.setRect(QRectF(self._last_pos.x() - r, self._last_pos.y() - r, 2 * r, 2 * r))
        self._cursor.show()
        if alive(self._size_label):
            self._size_label.setPos(self._last_pos.x() + r, self._last_pos.y() + r)

    def size_label(self) -> str:
        """The size written next to the cursor ("" when none is shown)."""
        return self._size_label.text() if alive(self._size_label) and self._size_label.isVisible() else ""

    def _resized(self, diameter: int) -> None:
        if self.editor.tool is not self or self._last_pos is None:
            return
        if not alive(self._size_label):
            self._size_label = QGraphicsSimpleTextItem()
            self._size_label.setBrush(QBrush(QColor(255, 255, 255)))
            self._size_label.setPen(QPen(QColor(0, 0, 0), 0.5))
            # Same size on screen at any zoom, like the brush itself.
            self._size_label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            self.add_item(self._size_label)
        self._size_label.setText(f"{diameter} px")
        self._size_label.show()
        self._update_cursor()
        self._label_timer.start()

    def _hide_size_label(self) -> None:
        if alive(self._size_label):
            self._size_label.hide()


class EraserTool(BrushTool):
    name = "eraser"
    label = "Eraser"
    erase = True
