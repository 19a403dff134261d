"""The category panel: the project's categories with their colour and number of instances, and the
buttons that edit them (add, rename, recolour, delete with reassignment, add the model's classes).

The list's current row is the category that new instances get. The panel only asks (signals); the
editing itself is :class:`app.ui.category_editing.CategoryEditing`'s, as undo commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QToolButton, QVBoxLayout, QWidget

from app.project.records import CategoryRecord
from app.ui.panels.instance_list import swatch


class CategoryPanel(QListWidget):
    """``categorySelected(id)`` fires when the user picks a category."""

    categorySelected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current = -1
        self.currentItemChanged.connect(self._current_changed)

    def set_categories(self, categories: Sequence[CategoryRecord], counts: Mapping[int, int]) -> None:
        self.blockSignals(True)
        self.clear()
        for category in categories:
            item = QListWidgetItem(
                swatch(QColor(category.color)), f"{category.name}  ({counts.get(category.id, 0)})"
            )
            item.setData(Qt.ItemDataRole.UserRole, category.id)
            self.addItem(item)
        self.blockSignals(False)
        self.set_current(self._current)

    def names(self) -> list[str]:
        return [self.item(row).text() for row in range(self.count())]

    def category_ids(self) -> list[int]:
        return [self.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.count())]

    def current_category(self) -> int:
        """The highlighted category's id, or -1."""
        return self._current

    def set_current(self, category_id: int) -> None:
        """Highlight a category without announcing it."""
        self._current = category_id
        ids = self.category_ids()
        self.blockSignals(True)
        self.setCurrentRow(ids.index(category_id) if category_id in ids else -1)
        self.blockSignals(False)

    def _current_changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is not None:
            self._current = current.data(Qt.ItemDataRole.UserRole)
            self.categorySelected.emit(self._current)


class CategoryDock(QWidget):
    """The panel with its editing buttons; each button emits a request signal."""

    addRequested = Signal()
    renameRequested = Signal(int)
    recolourRequested = Signal(int)
    deleteRequested = Signal(int)
    fromModelRequested = Signal()

    def __init__(self, panel: CategoryPanel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(panel)
        row = QHBoxLayout()
        layout.addLayout(row)
        self.buttons: dict[str, QToolButton] = {}
        for key, text, tip, signal in (
            ("add", "Add…", "Add a category", self.addRequested),
            ("rename", "Rename…", "Rename the highlighted category", self.renameRequested),
            ("colour", "Colour…", "Change the highlighted category's colour", self.recolourRequested),
            (
                "delete",
                "Delete…",
                "Delete the highlighted category (its instances go to another)",
                self.deleteRequested,
            ),
            ("model", "From model", "Add the loaded model's classes as categories", self.fromModelRequested),
        ):
            button = QToolButton()
            button.setText(text)
            button.setToolTip(tip)
            row.addWidget(button)
            self.buttons[key] = button
            if key in ("add", "model"):
                button.clicked.connect(signal.emit)
            else:
                button.clicked.connect(lambda _c=False, s=signal: self._with_current(s))
        row.addStretch(1)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        for button in self.buttons.values():
            button.setEnabled(enabled)

    def _with_current(self, signal: SignalInstance) -> None:
        if self.panel.current_category() >= 0:
            signal.emit(self.panel.current_category())
