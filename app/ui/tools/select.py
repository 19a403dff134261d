"""Select: click an instance (Ctrl/Shift+click adds or removes it), click the background to clear."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QMouseEvent

from app.ui.tools.base import Tool


class SelectTool(Tool):
    name = "select"
    label = "Select"

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        hit = self.canvas.instance_at(pos)
        extend = event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        if extend:
            if hit is not None:
                self.editor.toggle_selected(hit)
        else:
            self.editor.select([] if hit is None else [hit])
