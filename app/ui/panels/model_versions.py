"""The Model versions dock: every checkpoint the project has used or trained, and which one is active.

A view over plain records: :func:`version_rows` joins the store's model versions with the training runs
that made them (parent, training images, mask AP); ``activateRequested`` asks for one by its version id
(the model registry decides).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.project.comparison import mask_ap
from app.project.records import ModelVersionRecord, TrainingRunRecord
from app.session.run_history import VALIDATION

COLUMNS = ("", "Name", "Parent", "Classes", "Training images", "Mask AP (val)", "Created", "Checkpoint")


@dataclass(frozen=True)
class VersionRow:
    """One model version as the panel shows it."""

    id: int
    name: str
    parent: str
    classes: str
    training_images: int | None
    mask_ap: float | None
    created: str
    path: str | None
    active: bool


def version_rows(
    versions: Sequence[ModelVersionRecord], runs: Sequence[TrainingRunRecord], active_id: int | None
) -> list[VersionRow]:
    """Newest first. A version trained here names its parent and carries its run's validation AP."""
    names = {v.id: v.name for v in versions}
    run_of = {r.id: r for r in runs}
    rows = []
    for version in reversed(versions):
        run = run_of.get(version.training_run_id) if version.training_run_id is not None else None
        count = run.config.get("num_train_images") if run else None
        rows.append(
            VersionRow(
                id=version.id,
                name=version.name,
                parent=names.get(run.base_model_version_id, "") if run and run.base_model_version_id else "",
                classes=", ".join(n for _, n in version.categories),
                training_images=None if count is None else int(count),
                mask_ap=mask_ap(run.metrics.get(VALIDATION)) if run else None,
                created=version.created_at[:16].replace("T", " "),
                path=version.path,
                active=version.id == active_id,
            )
        )
    return rows


class ModelVersionsPanel(QWidget):
    """A table of versions (the active one marked ●) and an Activate button (or double-click)."""

    activateRequested = Signal(int)  # model version id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_button)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self._activate())
        self.activate_button = QPushButton("Activate")
        self.activate_button.setEnabled(False)
        self.activate_button.clicked.connect(self._activate)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.activate_button)
        self._rows: list[VersionRow] = []

    def show_versions(self, rows: Sequence[VersionRow]) -> None:
        self._rows = list(rows)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = (
                "●" if row.active else "",
                row.name,
                row.parent,
                row.classes,
                "" if row.training_images is None else str(row.training_images),
                "" if row.mask_ap is None else f"{row.mask_ap:.3f}",
                row.created,
                row.path or "",
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if row.active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if c == len(cells) - 1:
                    item.setToolTip(text)
                self.table.setItem(r, c, item)
        self._update_button()

    def row_names(self) -> list[str]:
        return [row.name for row in self._rows]

    def active_name(self) -> str | None:
        return next((row.name for row in self._rows if row.active), None)

    def select_version(self, version_id: int) -> None:
        for r, row in enumerate(self._rows):
            if row.id == version_id:
                self.table.selectRow(r)

    def _selected(self) -> VersionRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self._rows[rows[0].row()] if rows else None

    def _update_button(self) -> None:
        row = self._selected()
        usable = row is not None and not row.active and bool(row.path and Path(row.path).is_file())
        self.activate_button.setEnabled(usable)
        tip = "" if usable or row is None else "already active, or its file is gone"
        self.activate_button.setToolTip(tip)

    def _activate(self) -> None:
        row = self._selected()
        if row is not None and row.path and not row.active and Path(row.path).is_file():
            self.activateRequested.emit(row.id)

    def keyPressEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._activate()
            return
        super().keyPressEvent(event)
