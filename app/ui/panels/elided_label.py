"""A one-line label that shows as much of its text as fits and ends it with "…": in the status bar, a long
permanent label (the active model's name and classes) would otherwise take the width the status bar's
messages need, and they would be cut off mid-word ("Exported 18 annotations on 4 images to /")."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """``text()`` stays the whole text; it is drawn in at most ``max_chars`` average characters' width,
    elided at the right (the tooltip is the place for the rest)."""

    def __init__(self, text: str = "", max_chars: int = 40, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self._max_chars = max_chars
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)

    def _max_width(self) -> int:
        margins = self.contentsMargins()
        return self.fontMetrics().averageCharWidth() * self._max_chars + margins.left() + margins.right()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = super().sizeHint()
        return QSize(min(hint.width(), self._max_width()), hint.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.sizeHint()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        painter = QPainter(self)
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), shown)
