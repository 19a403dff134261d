"""What the Images dock shows while no folder is open: a way to open one, and the last folder in one click."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class StartPage(QWidget):
    openFolderRequested = Signal()  # File ▸ Open Folder…
    openLastRequested = Signal(object)  # Path: the last folder

    def __init__(self, last_folder: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(QLabel("No folder open"))
        self.open_last_button: QPushButton | None = None
        if last_folder is not None:
            self.open_last_button = QPushButton(f"Open the last folder: {last_folder.name}")
            self.open_last_button.setToolTip(str(last_folder))
            self.open_last_button.clicked.connect(lambda: self.openLastRequested.emit(last_folder))
            layout.addWidget(self.open_last_button)
        self.open_button = QPushButton("Open Folder…")
        self.open_button.clicked.connect(self.openFolderRequested.emit)
        layout.addWidget(self.open_button)
