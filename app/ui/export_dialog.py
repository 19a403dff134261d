"""File ▸ Export…: one dialog for where, in which format and which images; it starts from the project's last
choices (:class:`app.project.settings.ProjectSettings`) and the window writes them back when it exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from app.project.export_options import (
    COCO_FORMATS,
    EXPORT_ALL_IMAGES,
    EXPORT_FORMATS,
    EXPORT_IMAGES,
    FOLDER_FORMATS,
    ExportFormat,
    ExportOnly,
    FolderFormat,
)


@dataclass(frozen=True)
class ExportChoices:
    path: Path
    format: str  # a key of EXPORT_FORMATS
    images: str  # a key of EXPORT_IMAGES

    @property
    def segmentation(self) -> ExportFormat:
        """The COCO export's ``segmentation`` argument. Raises ``ValueError`` for a format it does not
        know."""
        for known in COCO_FORMATS:
            if self.format == known:
                return known
        raise ValueError(f"Unknown export format {self.format!r}: one of {', '.join(COCO_FORMATS)}")

    @property
    def folder_format(self) -> FolderFormat | None:
        """The format when the export is a folder (YOLO, label images), else ``None`` (a COCO file)."""
        return next((known for known in FOLDER_FORMATS if self.format == known), None)

    @property
    def only(self) -> ExportOnly | None:
        """The export's ``only`` argument (``None``: every image looked at). Raises ``ValueError`` for a
        choice of images it does not know."""
        if self.images not in EXPORT_IMAGES:
            raise ValueError(f"Unknown choice of images {self.images!r}: one of {', '.join(EXPORT_IMAGES)}")
        return None if self.images == EXPORT_ALL_IMAGES else self.images


class ExportDialog(QDialog):
    def __init__(self, defaults: ExportChoices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export annotations")
        self.path_edit = QLineEdit(str(defaults.path))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path_edit, stretch=1)
        where.addWidget(browse)
        self.format_box = QComboBox()
        for export_format, text in EXPORT_FORMATS.items():
            self.format_box.addItem(text, export_format)
        self.format_box.setCurrentIndex(max(self.format_box.findData(defaults.format), 0))
        self.images_box = QComboBox()
        for images, text in EXPORT_IMAGES.items():
            self.images_box.addItem(text, images)
        self.images_box.setCurrentIndex(max(self.images_box.findData(defaults.images), 0))
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.path_edit.textChanged.connect(self._path_changed)
        form = QFormLayout(self)
        form.addRow("File or folder:", where)
        form.addRow("Format:", self.format_box)
        form.addRow("Images:", self.images_box)
        form.addRow(self.buttons)
        self.resize(620, self.sizeHint().height())
        self._path_changed(self.path_edit.text())

    def choices(self) -> ExportChoices:
        return ExportChoices(
            Path(self.path_edit.text().strip()).expanduser(),
            self.format_box.currentData(),
            self.images_box.currentData(),
        )

    def _browse(self) -> None:
        if self.choices().folder_format is not None:
            path = QFileDialog.getExistingDirectory(
                self, "Export into a new or empty folder", self.path_edit.text()
            )
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export to", self.path_edit.text(), "COCO JSON (*.json)"
            )
        if path:
            self.path_edit.setText(path)

    def _path_changed(self, text: str) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(bool(text.strip()))


def ask_export(defaults: ExportChoices, parent: QWidget | None = None) -> ExportChoices | None:
    """The user's choices, or ``None`` when cancelled."""
    dialog = ExportDialog(defaults, parent)
    return dialog.choices() if dialog.exec() == QDialog.DialogCode.Accepted else None
