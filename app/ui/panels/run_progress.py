"""The status-bar progress of an auto-segment run: bar, images segmented, ETA, and a Cancel button; and how
durations are written (the fine-tune dialog's estimate and the Training panel's time left use them too)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget


def format_duration(seconds: float) -> str:
    """``"1:05"`` (minutes and seconds) or ``"1:02:03"`` (with hours)."""
    whole = int(round(max(0.0, seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_eta(seconds: float) -> str:
    """``"ETA 1:05"`` style text; empty while unknown (negative)."""
    return "" if seconds < 0 else f"ETA {format_duration(seconds)}"


class RunProgress(QWidget):
    """Hidden while nothing runs. ``cancelRequested`` fires on Cancel."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.label = QLabel()
        self._images = ""  # the images' count, which the tile count of a large image follows
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout.addWidget(self.bar)
        layout.addWidget(self.label)
        layout.addWidget(self.cancel_button)
        self.setVisible(False)

    def set_busy(self, busy: bool) -> None:
        self.setVisible(busy)

    def set_progress(self, done: int, total: int, eta_seconds: float) -> None:
        self.bar.setMaximum(max(total, 1))
        self.bar.setValue(done)
        eta = format_eta(eta_seconds)
        self._images = f"{done}/{total}" + (f"  {eta}" if eta else "")
        self.label.setText(self._images)

    def set_tile_progress(self, done: int, total: int) -> None:
        """Where a large image segmented tile by tile is (after the images' count)."""
        self.label.setText(f"{self._images}  tile {done}/{total}".strip())
