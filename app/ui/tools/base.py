"""The tool interface the canvas talks to: scene-coordinate press / move / release, keys, cancel."""

from __future__ import annotations

from typing import TypeGuard, TypeVar

import shiboken6
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGraphicsItem

from app.session.editor import Editor
from app.ui.canvas.view import Canvas

_Item = TypeVar("_Item", bound=QGraphicsItem)


class Tool:
    """Base class: every handler does nothing. Positions are scene (= image pixel) coordinates.

    A tool edits through ``editor`` (the session's state and undo commands) and draws its previews and
    cursor on ``canvas``, the view that hands it input while it is the active tool."""

    name = ""
    label = ""
    cursor: Qt.CursorShape | None = None  # the canvas cursor while the tool is active (None: the default)

    def __init__(self, editor: Editor, canvas: Canvas) -> None:
        self.editor = editor
        self.canvas = canvas
        self._items: list[QGraphicsItem] = []

    def activate(self) -> None:
        """Called when the tool becomes the active one."""
        if self.cursor is not None:
            self.canvas.viewport().setCursor(self.cursor)

    def deactivate(self) -> None:
        """Called when another tool takes over (or the image changes): drop previews, forget gestures."""
        self.cancel()
        if self.cursor is not None:
            self.canvas.viewport().unsetCursor()

    def cancel(self) -> None:
        """Abandon the gesture in progress."""
        self.clear_items()

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        self.press(pos, event)

    def key_press(self, event: QKeyEvent) -> bool:
        """Handle a key; ``True`` when it was used."""
        return False

    def takes_key(self, event: QKeyEvent) -> bool:
        """Whether the tool needs ``event``'s key now, before a menu shortcut that has it."""
        return False

    def leave(self) -> None:
        """The mouse left the canvas."""

    # ----------------------------------------------------------------------------------- preview items
    def add_item(self, item: QGraphicsItem) -> QGraphicsItem:
        """Show a preview item above the overlay; it is removed by :meth:`clear_items`."""
        item.setZValue(10)
        self.canvas.scene().addItem(item)
        self._items.append(item)
        return item

    def clear_items(self) -> None:
        for item in self._items:
            if alive(item):
                item.scene().removeItem(item)
        self._items = []


def alive(item: _Item | None) -> TypeGuard[_Item]:
    """Whether a preview item is still on the canvas: showing another image clears the scene, which
    deletes every item in it, ours included. Type checkers take a True answer to mean "not None"."""
    return item is not None and shiboken6.isValid(item) and item.scene() is not None
