"""The toolbar sliders: score threshold (re-filters predictions, no model run) and overlay opacity."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


class ViewControls(QWidget):
    """``scoreThresholdChanged(float)`` and ``opacityChanged(float)`` carry values in [0, 1]."""

    scoreThresholdChanged = Signal(float)
    opacityChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        self.score_slider = self._slider()
        self.score_label = QLabel()
        self.score_label.setMinimumWidth(80)
        self.opacity_slider = self._slider()
        layout.addWidget(self.score_label)
        layout.addWidget(self.score_slider)
        layout.addSpacing(16)
        layout.addWidget(QLabel("Opacity"))
        layout.addWidget(self.opacity_slider)
        self.score_slider.valueChanged.connect(self._score_moved)
        self.opacity_slider.valueChanged.connect(lambda v: self.opacityChanged.emit(v / 100))

    @staticmethod
    def _slider() -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setMaximumWidth(160)
        return slider

    def set_score_threshold(self, value: float) -> None:
        """Show ``value`` without re-announcing it."""
        self.score_slider.blockSignals(True)
        self.score_slider.setValue(round(value * 100))
        self.score_slider.blockSignals(False)
        self.score_label.setText(f"Score ≥ {value:.2f}")

    def set_opacity(self, value: float) -> None:
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(value * 100))
        self.opacity_slider.blockSignals(False)

    def _score_moved(self, value: int) -> None:
        self.score_label.setText(f"Score ≥ {value / 100:.2f}")
        self.scoreThresholdChanged.emit(value / 100)
