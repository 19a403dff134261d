"""The instance list: one row per shown instance (colour, category, score, provenance)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from app.session.overlay import Overlay


def swatch(color: QColor, size: int = 12) -> QIcon:
    """A small square icon of ``color``."""
    pixmap = QPixmap(size, size)
    pixmap.fill(color)
    return QIcon(pixmap)


class InstanceList(QListWidget):
    """Lists the canvas's instances; ``instanceSelected(id)`` fires when the user picks one."""

    instanceSelected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.currentItemChanged.connect(self._current_changed)

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        self.blockSignals(True)
        self.clear()
        for overlay in overlays:
            score = f"  {overlay.score:.2f}" if overlay.score is not None else ""
            crowd = "crowd: " if overlay.crowd else ""  # a crowd region, not an object
            item = QListWidgetItem(
                swatch(overlay.color), f"{crowd}{overlay.category_name}{score}  ·  {overlay.provenance.value}"
            )
            item.setData(Qt.ItemDataRole.UserRole, overlay.instance_id)
            item.setToolTip(f"instance {overlay.instance_id}, {overlay.mask.area} px")
            self.addItem(item)
        self.blockSignals(False)

    def instance_ids(self) -> list[int]:
        return [self.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.count())]

    def select(self, instance_id: int) -> None:
        for row in range(self.count()):
            if self.item(row).data(Qt.ItemDataRole.UserRole) == instance_id:
                self.blockSignals(True)
                self.setCurrentRow(row)
                self.blockSignals(False)
                return

    def _current_changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is not None:
            self.instanceSelected.emit(current.data(Qt.ItemDataRole.UserRole))
