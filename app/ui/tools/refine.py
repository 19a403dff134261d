"""Refine with polygon: turn the selected instance's outline into vertices that can be edited, then back
into its mask as one undo command.

A mask has no vertices of its own, so they are made from its outer outline (simplified within
:data:`REFINE_TOLERANCE` pixels, through the corners of its edge pixels, so that an unmoved outline gives
back the same pixels along straight edges). Drag a vertex to move it, double-click an edge to add one,
Delete or Backspace removes the vertex last touched (three stay at least). Enter, or a click away from the
outline, applies the polygon; Esc abandons it.

Holes are kept: they are cut out of the applied polygon again. An instance of several separate parts is
refused with a message (split it first: Shift+M), since one polygon cannot say which part it replaces.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsPolygonItem

from app.project.mask_ops import combine, fill_holes, polygon_mask, split
from app.project.records import InstanceRecord
from app.session import commands
from app.session.editor import Editor
from app.ui.canvas.outline import contours
from app.ui.canvas.view import Canvas
from app.ui.tools.base import Tool, alive
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask

REFINE_TOLERANCE = 1.5  # image pixels: enough vertices to follow the shape, few enough to drag
HANDLE_PX = 5  # a vertex handle's radius on screen
GRAB_PX = 8  # screen pixels from a vertex or edge that count as touching it
COMMAND_TEXT = "Refine with polygon"
_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Delete, Qt.Key.Key_Backspace)


def outline_vertices(mask: CroppedMask, tolerance: float = REFINE_TOLERANCE) -> list[tuple[float, float]]:
    """The mask's largest outer outline as polygon vertices in image coordinates, at pixel corners: a
    pixel is inside the polygon exactly when its centre is (as :func:`polygon_mask` decides)."""
    pixels = np.pad(mask.mask, ((0, 1), (0, 1)))
    # Grown by one pixel down and right, the edge pixels' top-left corners trace the mask's boundary.
    grown = pixels.copy()
    grown[1:, :] |= pixels[:-1, :]
    grown[:, 1:] |= grown[:, :-1]
    outer = max(contours(grown), key=cv2.contourArea, default=None)
    if outer is None:
        return []
    polygon = cv2.approxPolyDP(outer, tolerance, True).reshape(-1, 2)
    return [(float(x + mask.x0), float(y + mask.y0)) for x, y in polygon]


class RefineTool(Tool):
    name = "refine"
    label = COMMAND_TEXT
    cursor = Qt.CursorShape.ArrowCursor

    def __init__(self, editor: Editor, canvas: Canvas) -> None:
        super().__init__(editor, canvas)
        self.points: list[tuple[float, float]] = []
        self._original: list[tuple[float, float]] = []
        self._record: InstanceRecord | None = None
        self._dragging: int | None = None
        self._current: int | None = None  # the vertex last pressed: Delete removes it
        self._previous_tool = "select"
        self._shape: QGraphicsPolygonItem | None = None

    # ------------------------------------------------------------------------------------ life cycle
    def start(self) -> bool:
        """Become the active tool on the selected instance's vertices; ``False`` (with a message, the
        tool unchanged) when it cannot be refined. When it ends, the tool used before is active again."""
        records = self.editor.selected_records()
        if len(records) != 1:
            self.editor.message.emit(f"{COMMAND_TEXT}: select one instance first")
            return False
        record = records[0]
        mask = rle_to_mask(record.rle)
        parts = len(split(mask))
        if parts > 1:
            self.editor.message.emit(
                f"{COMMAND_TEXT}: this instance has {parts} separate parts; split it first (Shift+M)"
            )
            return False
        points = outline_vertices(mask)
        if len(points) < 3:
            self.editor.message.emit(f"{COMMAND_TEXT}: the instance is too small to outline")
            return False
        if self.editor.tool is not None and self.editor.tool is not self:
            self._previous_tool = self.editor.tool.name
        self.editor.set_tool(self.name)
        self._record, self.points, self._original = record, points, list(points)
        self.editor.message.emit(
            f"{COMMAND_TEXT}: drag vertices, double-click an edge to add one, Delete removes one; "
            "Enter applies, Esc abandons (holes are kept)"
        )
        self._redraw()
        return True

    def cancel(self) -> None:
        self.points, self._original, self._record = [], [], None
        self._dragging = self._current = None
        self._shape = None
        self.clear_items()

    def apply(self) -> None:
        """Replace the instance's mask by the polygon (its holes cut out again): one undo command."""
        record, points, unchanged = self._record, self.points, self.points == self._original
        self.cancel()
        if record is not None and not unchanged:
            editor = self.editor
            original = rle_to_mask(record.rle)
            holes = combine(fill_holes(original), original, add=False)
            shape = combine(polygon_mask(points, original.image_size), holes, add=False)
            if shape.area == 0:
                editor.message.emit(f"{COMMAND_TEXT}: the polygon covers no pixel centre; nothing changed")
            else:
                editor.push(commands.edit_mask(editor.context, record, shape, COMMAND_TEXT))
        self.editor.set_tool(self._previous_tool)

    def abandon(self) -> None:
        self.cancel()
        self.editor.set_tool(self._previous_tool)

    # ----------------------------------------------------------------------------------------- input
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if not self.points:  # abandoned under it (another image was shown): back to the previous tool
            self.editor.set_tool(self._previous_tool)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        index = self._vertex_at(pos)
        if index is not None:
            self._dragging = self._current = index
            return
        if self._edge_at(pos) is None:
            self.apply()  # a click away from the outline ends the refinement

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._dragging is not None:
            self.points[self._dragging] = (pos.x(), pos.y())
            self._redraw()

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        self._dragging = None

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.points:
            return
        edge = self._edge_at(pos)
        if edge is not None and self._vertex_at(pos) is None:
            self.points.insert(edge + 1, (pos.x(), pos.y()))
            self._current = edge + 1
            self._redraw()

    def takes_key(self, event: QKeyEvent) -> bool:
        return bool(self.points) and event.key() in _KEYS

    def key_press(self, event: QKeyEvent) -> bool:
        if not self.points:
            return False
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.apply()
            return True
        if key == Qt.Key.Key_Escape:
            self.abandon()
            return True
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self._current is not None:
            if len(self.points) > 3:
                del self.points[self._current]
                self._current = None
                self._redraw()
            else:
                self.editor.message.emit(f"{COMMAND_TEXT}: a polygon keeps at least three vertices")
            return True
        return False

    # ------------------------------------------------------------------------------------- geometry
    def _screen(self, point: tuple[float, float]) -> np.ndarray:
        p = self.canvas.mapFromScene(QPointF(*point))
        return np.array([p.x(), p.y()], dtype=np.float64)

    def _vertex_at(self, pos: QPointF) -> int | None:
        here = self._screen((pos.x(), pos.y()))
        distances = [float(np.hypot(*(self._screen(p) - here))) for p in self.points]
        best = int(np.argmin(distances))
        return best if distances[best] <= GRAB_PX else None

    def _edge_at(self, pos: QPointF) -> int | None:
        """The edge (index of its first vertex) within reach of ``pos`` on screen, or ``None``."""
        here = self._screen((pos.x(), pos.y()))
        best, best_distance = None, float(GRAB_PX)
        for i, point in enumerate(self.points):
            a, b = self._screen(point), self._screen(self.points[(i + 1) % len(self.points)])
            ab = b - a
            t = float(np.clip(np.dot(here - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
            distance = float(np.hypot(*(a + t * ab - here)))
            if distance <= best_distance:
                best, best_distance = i, distance
        return best

    # -------------------------------------------------------------------------------------- drawing
    def _redraw(self) -> None:
        self.clear_items()
        self._shape = QGraphicsPolygonItem(QPolygonF([QPointF(*p) for p in self.points]))
        pen = QPen(QColor(0, 230, 255), 2)
        pen.setCosmetic(True)
        self._shape.setPen(pen)
        self._shape.setBrush(QColor(0, 230, 255, 40))
        self.add_item(self._shape)
        for point in self.points:
            handle = QGraphicsEllipseItem(QRectF(-HANDLE_PX, -HANDLE_PX, 2 * HANDLE_PX, 2 * HANDLE_PX))
            handle.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)  # same size at any zoom
            handle.setPos(QPointF(*point))
            handle.setPen(QPen(QColor(0, 0, 0), 1))
            handle.setBrush(QColor(255, 255, 255))
            self.add_item(handle)

    def handle_count(self) -> int:
        """How many vertex handles are on the canvas now."""
        return sum(1 for item in self._items if alive(item) and isinstance(item, QGraphicsEllipseItem))
