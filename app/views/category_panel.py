"""The category panel: the project's categories with their colour and number of instances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from app.model_types import CategoryRecord
from app.views.instance_list import swatch


class CategoryPanel(QListWidget):
    """Read-only for now; the editing tools (issue 5) pick the category of new instances here."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)

    def set_categories(self, categories: Sequence[CategoryRecord], counts: Mapping[int, int]) -> None:
        self.clear()
        for category in categories:
            item = QListWidgetItem(
                swatch(QColor(category.color)), f"{category.name}  ({counts.get(category.id, 0)})"
            )
            item.setData(Qt.ItemDataRole.UserRole, category.id)
            self.addItem(item)

    def names(self) -> list[str]:
        return [self.item(row).text() for row in range(self.count())]
