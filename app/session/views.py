"""What the session drives in the window, as the session sees it: the canvas, the instance list, the category
list and an editing tool. The window's widgets fit these shapes; the session never imports them, so it
holds no widget code and can be driven by a test's stand-in as well as by the real window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent

from app.project.records import CategoryRecord
from app.session.overlay import Overlay
from app.workers.view_tiles import LargeImageTiles


class EditingTool(Protocol):
    """An editing tool (select, brush, polygon, …): the editor switches tools, the canvas hands the active
    one its input. Positions are scene coordinates (original-image pixels)."""

    @property
    def name(self) -> str: ...

    def activate(self) -> None:
        """It becomes the active tool."""

    def deactivate(self) -> None:
        """Another tool takes over, or the project closes: drop previews, forget gestures."""

    def cancel(self) -> None:
        """Abandon the gesture in progress (the image changes, Escape)."""

    def press(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def move(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def release(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def key_press(self, event: QKeyEvent) -> bool:
        """Handle a key; ``True`` when it was used."""
        ...

    def takes_key(self, event: QKeyEvent) -> bool:
        """Whether the tool needs this key now even though a menu shortcut has it (Delete on a vertex)."""
        ...

    def leave(self) -> None:
        """The mouse left the canvas."""


class CanvasView(Protocol):
    """The image with its instance overlay, and the tool that gets its mouse and key input."""

    tool: EditingTool | None

    def set_image(self, image: QImage | None, message: str = "") -> None:
        """Show ``image``, or no image and ``message``; the overlay is emptied either way."""

    def set_large_image(self, tiles: LargeImageTiles) -> None:
        """Show a large image from its tiles; the overlay is emptied."""

    def set_message(self, message: str) -> None:
        """Show ``message`` instead of an image (loading, or why the file cannot be shown)."""

    def has_image(self) -> bool: ...

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Draw these instances, in this order, over the image."""

    def set_selection(self, instance_ids: Iterable[int]) -> None:
        """Highlight these instances."""

    def set_hidden(self, instance_ids: Iterable[int]) -> None:
        """Leave these instances out of view (a view setting: nothing is edited)."""


class InstanceListView(Protocol):
    """One row per instance of the image shown."""

    def set_overlays(self, overlays: Sequence[Overlay]) -> None: ...


class CategoryListView(Protocol):
    """The project's categories with their instance counts."""

    def set_categories(self, categories: Sequence[CategoryRecord], counts: Mapping[int, int]) -> None: ...
