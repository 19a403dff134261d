"""A small line chart drawn with QPainter: one curve per named series, a legend, optional log scale.

QtCharts is not part of PySide6-Essentials, and training curves need little: a few hundred points per
series. The chart is drawn into a pixmap when a point arrives (``update()`` coalesces bursts into one
paint) and a plain repaint only copies that pixmap: each Qt call made from Python can wait for the GIL
while a worker thread runs Python, so a repaint that re-draws every point stalled the GUI thread.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

# Tableau 10, as the category colours: distinct and readable on a light background.
SERIES_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 52, 10, 8, 22
_LEGEND_ROW = 16
_LEGEND_MAX_COLUMNS = 3
_LEGEND_SWATCH = 16  # the colour swatch and the gap after it, before the series name
_LEGEND_GAP = 12  # between a name and the next column's swatch


class CurveChart(QWidget):
    """``add_point(series, x, y)`` appends to a curve; ``log_y`` plots ``log10(y)`` (losses span decades)."""

    def __init__(
        self,
        title: str,
        *,
        log_y: bool = False,
        y_range: tuple[float, float] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.log_y = log_y
        self.y_range = y_range
        self._series: dict[str, list[tuple[float, float]]] = {}
        self._polygons: dict[str, QPolygonF] = {}  # (x, plotted y) per series, grown one point at a time
        self._x_max = 1.0
        self._picture: QPixmap | None = None  # the drawn chart; None when it must be drawn again
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(360, 200)

    def clear(self, x_max: float = 1.0) -> None:
        self._series.clear()
        self._polygons.clear()
        self._x_max = max(1.0, float(x_max))
        self._redraw()

    def set_x_max(self, x_max: float) -> None:
        """The x axis runs from 0 to ``x_max`` (the run's iterations), so the curve grows to the right."""
        self._x_max = max(1.0, float(x_max))
        self._redraw()

    def add_point(self, series: str, x: float, y: float | None) -> None:
        """Append ``(x, y)``; a missing, non-finite or (on a log scale) non-positive ``y`` is skipped."""
        if y is None or not math.isfinite(y) or (self.log_y and y <= 0):
            return
        self._series.setdefault(series, []).append((float(x), float(y)))
        self._polygons.setdefault(series, QPolygonF()).append(QPointF(float(x), self._y(float(y))))
        self._x_max = max(self._x_max, float(x))
        self._redraw()

    def _redraw(self) -> None:
        self._picture = None
        self.update()

    def series(self) -> dict[str, list[tuple[float, float]]]:
        return {k: list(v) for k, v in self._series.items()}

    # ------------------------------------------------------------------------------------------ drawing
    def _y(self, value: float) -> float:
        return math.log10(value) if self.log_y else value

    def _y_limits(self) -> tuple[float, float]:
        if self.y_range is not None:
            return self._y(self.y_range[0]), self._y(self.y_range[1])
        values = [self._y(y) for points in self._series.values() for _, y in points]
        if not values:
            return 0.0, 1.0
        low, high = min(values), max(values)
        if self.log_y:  # whole decades, at least one
            return math.floor(low), max(math.ceil(high), math.floor(low) + 1)
        pad = (high - low) * 0.05 or 0.5
        return low - pad, high + pad

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        ratio = self.devicePixelRatioF()
        size = self.size() * ratio
        if self._picture is None or self._picture.size() != size:
            self._picture = QPixmap(size)
            self._picture.setDevicePixelRatio(ratio)
            self._draw_chart(self._picture)
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._picture)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._picture = None
        super().changeEvent(event)

    def _draw_chart(self, device: QPixmap) -> None:
        painter = QPainter(device)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        legend = self.legend_rects()
        legend_rows = len({rect.top() for rect in legend})
        plot = QRectF(
            _MARGIN_LEFT,
            _MARGIN_TOP + _LEGEND_ROW * (1 + legend_rows),
            max(10, self.width() - _MARGIN_LEFT - _MARGIN_RIGHT),
            max(10, self.height() - _MARGIN_TOP - _MARGIN_BOTTOM - _LEGEND_ROW * (1 + legend_rows)),
        )
        text = self.palette().text().color()
        painter.setPen(text)
        painter.drawText(QPointF(_MARGIN_LEFT, _MARGIN_TOP + 11), self.title)
        low, high = self._y_limits()
        self._draw_axes(painter, plot, low, high, text)
        for index, ((name, polygon), rect) in enumerate(zip(self._polygons.items(), legend, strict=True)):
            color = QColor(SERIES_COLORS[index % len(SERIES_COLORS)])
            self._draw_legend_entry(painter, rect, name, color)
            self._draw_curve(painter, plot, polygon, low, high, color)
        painter.end()

    def _draw_axes(self, painter: QPainter, plot: QRectF, low: float, high: float, color: QColor) -> None:
        grid = QColor(color)
        grid.setAlpha(40)
        steps = int(high - low) if self.log_y else 4
        for i in range(steps + 1):
            value = low + (high - low) * i / max(steps, 1)
            y = plot.bottom() - plot.height() * i / max(steps, 1)
            painter.setPen(QPen(grid))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(color)
            label = f"{10**value:g}" if self.log_y else f"{value:.2f}"
            painter.drawText(QRectF(0, y - 8, _MARGIN_LEFT - 4, 16), Qt.AlignmentFlag.AlignRight, label)
        painter.setPen(color)
        painter.drawRect(plot)
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 2, plot.width(), 18),
            Qt.AlignmentFlag.AlignRight,
            f"iteration (max {int(self._x_max)})",
        )

    def legend_rects(self) -> list[QRectF]:
        """Where each series' legend entry (swatch and name) goes, in series order: as many columns as the
        widest name lets fit in the chart's width (up to three), so a narrow dock wraps the legend instead
        of cutting names off."""
        if not self._series:
            return []
        metrics = self.fontMetrics()
        column = _LEGEND_SWATCH + max(metrics.horizontalAdvance(name) for name in self._series) + _LEGEND_GAP
        room = self.width() - _MARGIN_LEFT - _MARGIN_RIGHT
        columns = max(1, min(_LEGEND_MAX_COLUMNS, int(room // column)))
        return [
            QRectF(
                _MARGIN_LEFT + (index % columns) * column,
                _MARGIN_TOP + _LEGEND_ROW * (index // columns + 1) + 4,
                column - _LEGEND_GAP,
                _LEGEND_ROW,
            )
            for index in range(len(self._series))
        ]

    def _draw_legend_entry(self, painter: QPainter, rect: QRectF, name: str, color: QColor) -> None:
        painter.fillRect(QRectF(rect.left(), rect.top() + 3, 12, 4), color)
        painter.setPen(self.palette().text().color())
        painter.drawText(QPointF(rect.left() + _LEGEND_SWATCH, rect.top() + 9), name)

    def _draw_curve(
        self, painter: QPainter, plot: QRectF, polygon: QPolygonF, low: float, high: float, color: QColor
    ) -> None:
        """The series in data coordinates under a data → widget transform: a handful of Qt calls per
        series however many points it has (each Qt call made from Python can wait for the GIL)."""
        span = high - low if high > low else 1.0
        painter.save()
        painter.setClipRect(plot.adjusted(-2, -2, 2, 2))
        painter.translate(plot.left(), plot.bottom())
        painter.scale(plot.width() / self._x_max, -plot.height() / span)
        painter.translate(0, -low)
        pen = QPen(color, 1.6)
        pen.setCosmetic(True)  # 1.6 device pixels wide whatever the scale
        painter.setPen(pen)
        if polygon.size() == 1:
            point = painter.transform().map(polygon.at(0))
            painter.resetTransform()
            painter.setBrush(color)
            painter.drawEllipse(point, 3, 3)
        else:
            painter.drawPolyline(polygon)
        painter.restore()
