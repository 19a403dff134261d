"""Polygon: click vertices; close it by clicking the first vertex, double-clicking or pressing Enter.

Closing creates a new instance of the current category; with Shift held it adds the polygon to the
selected instance, with Ctrl it cuts it out of the selected instance. Backspace removes the last vertex,
Esc abandons the polygon.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from app.project.mask_ops import combine, polygon_mask
from app.session import commands
from app.session.editor import Editor
from app.ui.canvas.view import Canvas
from app.ui.tools.base import Tool, alive
from maskrcnn_core.masks import rle_to_mask

CLOSE_DISTANCE_PX = 8  # screen pixels from the first vertex that count as clicking it


class PolygonTool(Tool):
    name = "polygon"
    label = "Polygon"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, editor: Editor, canvas: Canvas) -> None:
        super().__init__(editor, canvas)
        self.points: list[tuple[float, float]] = []
        self._hover: QPointF | None = None
        self._item: QGraphicsPathItem | None = None

    def cancel(self) -> None:
        self.points = []
        self._item = None
        self.clear_items()

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.editor.image_size() is None:
            return
        if len(self.points) >= 3 and self._near_first(pos):
            self.close(event.modifiers())
            return
        self.points.append((pos.x(), pos.y()))
        self._redraw()

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        # Qt turns the second press of a double click into this event: it ends the polygon at this point.
        if event.button() != Qt.MouseButton.LeftButton or self.editor.image_size() is None:
            return
        if not self.points or self.canvas.mapFromScene(QPointF(*self.points[-1])) != (
            self.canvas.mapFromScene(pos)
        ):
            self.points.append((pos.x(), pos.y()))
        if len(self.points) >= 3:
            self.close(event.modifiers())

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._hover = pos
        if self.points:
            self._redraw()

    def key_press(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and len(self.points) >= 3:
            self.close(event.modifiers())
            return True
        if key == Qt.Key.Key_Backspace and self.points:
            self.points.pop()
            self._redraw()
            return True
        if key == Qt.Key.Key_Escape and self.points:
            self.cancel()
            return True
        return False

    def close(self, modifiers: Qt.KeyboardModifier | None = None) -> None:
        """Turn the polygon into an edit (see the module docstring for what the modifiers do)."""
        if modifiers is None:
            modifiers = QGuiApplication.keyboardModifiers()
        points = [p for i, p in enumerate(self.points) if i == 0 or p != self.points[i - 1]]
        self.cancel()
        editor = self.editor
        size = editor.image_size()
        if size is None:  # the image went away while the polygon was open
            return
        shape = polygon_mask(points, size)
        if shape.area == 0:
            editor.message.emit("Polygon: the shape covers no pixel centre")
            return
        add = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        cut = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        if add or cut:
            selected = editor.selected_records()
            if len(selected) != 1:
                editor.message.emit("Polygon: select one instance to add to or cut from")
                return
            mask = combine(rle_to_mask(selected[0].rle), shape, add=add)
            editor.push(
                commands.edit_mask(editor.context, selected[0], mask, "Polygon " + ("add" if add else "cut"))
            )
            return
        editor.push(
            commands.add_instance(
                editor.context, editor.image_id, shape, editor.category_for_new(), "Polygon"
            )
        )

    def _near_first(self, pos: QPointF) -> bool:
        first = self.canvas.mapFromScene(QPointF(*self.points[0]))
        here = self.canvas.mapFromScene(pos)
        return (first - here).manhattanLength() <= CLOSE_DISTANCE_PX

    def _redraw(self) -> None:
        if not self.points:
            self.cancel()
            return
        if not alive(self._item):
            self._item = QGraphicsPathItem()
            pen = QPen(QColor(255, 220, 0), 2)
            pen.setCosmetic(True)
            self._item.setPen(pen)
            self._item.setBrush(QColor(255, 220, 0, 50))
            self.add_item(self._item)
        path = QPainterPath(QPointF(*self.points[0]))
        for point in self.points[1:]:
            path.lineTo(QPointF(*point))
        if self._hover is not None:
            path.lineTo(self._hover)
        self._item.setPath(path)
