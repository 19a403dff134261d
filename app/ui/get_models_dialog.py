"""Model ▸ Get models…: the pretrained weights one can download, with their size and COCO scores; Download
runs on a worker thread with a progress bar and Cancel, and the downloaded model becomes the active one
through the model registry."""

from __future__ import annotations

from urllib.parse import urlsplit

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.session.model_registry import ModelRegistry
from app.workers.download import WeightsDownload
from maskrcnn_core import downloads

COLUMNS = ("Name", "Model", "Size", "COCO box AP", "COCO mask AP", "On disk")
DOWNLOADED = "downloaded"
ERROR_STYLE = "color: #c62828;"


class GetModelsDialog(QDialog):
    """Lists ``downloads.CATALOGUE``; downloads the chosen entry and hands its file to ``models``
    (``None`` when no project is open: the file is then only downloaded)."""

    def __init__(self, models: ModelRegistry | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get models")
        self.models = models
        self.worker: WeightsDownload | None = None
        self.entries = list(downloads.CATALOGUE.values())

        intro = QLabel(
            "Mask R-CNN models pretrained on COCO (everyday objects: people, animals, vehicles, …). "
            "Fine-tune one on your corrections to teach it your categories.<br>"
            f"Files are saved in <code>{downloads.hub_checkpoints_dir()}</code>."
        )
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.table = QTableWidget(len(self.entries), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self.download_selected())

        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.progress.hide()
        self.message = QLabel("")
        self.message.setWordWrap(False)

        self.download_button = QPushButton("Download")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel_download)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.download_button, self.cancel_button, close):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self.resize(860, 260)

        self._fill_table()
        self.table.selectRow(len(self.entries) - 1)  # the more accurate one
        self._update_buttons()

    # ---------------------------------------------------------------------------------------------- rows

    def select(self, name: str) -> None:
        self.table.selectRow([e.name for e in self.entries].index(name))

    def selected(self) -> downloads.PretrainedWeights | None:
        rows = self.table.selectionModel().selectedRows()
        return self.entries[rows[0].row()] if rows else None

    def status_of(self, name: str) -> str:
        row = [e.name for e in self.entries].index(name)
        item = self.table.item(row, len(COLUMNS) - 1)
        return item.text() if item is not None else ""

    def _fill_table(self) -> None:
        for row, weights in enumerate(self.entries):
            cells = (
                weights.name,
                weights.description,
                f"{weights.size_mb:.0f} MB",
                f"{weights.box_ap:.1f}",
                f"{weights.mask_ap:.1f}",
                DOWNLOADED if downloads.is_cached(weights) else "",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(weights.filename)
                if column in (2, 3, 4):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()

    def _update_buttons(self) -> None:
        busy = self.worker is not None
        weights = self.selected()
        self.download_button.setEnabled(not busy and weights is not None)
        cached = weights is not None and downloads.is_cached(weights)
        self.download_button.setText("Load" if cached else "Download")
        self.cancel_button.setEnabled(busy)
        self.table.setEnabled(not busy)

    # ------------------------------------------------------------------------------------------ download

    def download_selected(self) -> None:
        weights = self.selected()
        if weights is None or self.worker is not None:
            return
        if downloads.is_cached(weights):
            self._load(str(downloads.cached_path(weights)))
            return
        url = downloads.url_of(weights)
        self._say(f"Downloading {weights.filename} from {urlsplit(url).netloc}…")
        self.message.setToolTip(url)
        self.progress.setRange(0, 0)  # busy until the server says how big the file is
        self.progress.show()
        # parented to the application, not the dialog: closing the dialog cancels the download, and the
        # thread ends on its own instead of being destroyed while it runs
        worker = WeightsDownload(weights, QCoreApplication.instance())
        worker.progress.connect(self._on_progress)
        worker.downloaded.connect(self._on_downloaded)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.finished.connect(worker.deleteLater)
        self.worker = worker
        self._update_buttons()
        worker.start()

    def cancel_download(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._say("Cancelling…")

    def done(self, result: int) -> None:  # Close, Esc, the window's close button
        self.cancel_download()
        super().done(result)

    def _on_progress(self, done: int, total: int) -> None:
        total = total or (self.worker.weights.size_bytes if self.worker is not None else 0)
        if total:
            # in KiB: a QProgressBar counts in int, and 2 GiB would overflow it in bytes
            self.progress.setRange(0, max(1, total // 1024))
            self.progress.setValue(min(done, total) // 1024)
            self.progress.setFormat(f"%p%  ({done / downloads.MB:.1f} of {total / downloads.MB:.1f} MB)")

    def _on_downloaded(self, path: str) -> None:
        self._finish()
        self._fill_table()
        self._load(path)

    def _on_failed(self, message: str) -> None:
        self._finish()
        self._say(message, error=True)

    def _on_cancelled(self) -> None:
        self._finish()
        self._say("Download cancelled; nothing was kept.")

    def _finish(self) -> None:
        self.worker = None
        self.progress.hide()
        self._update_buttons()

    def _load(self, path: str) -> None:
        if self.models is None:
            self._say(f"Downloaded to {path}. Open a folder, then Get models ▸ Load to use it.")
            return
        try:
            self.models.activate_file(path)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Loading {path} as the active model…")
        self.accept()

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet(ERROR_STYLE if error else "")
        self.message.setText(text)
        self.message.setToolTip(text)
