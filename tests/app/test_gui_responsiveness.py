"""What keeps the GUI thread responsive while worker threads run Python, and the probe that measures it.

The image browser's rows live in C++ (no Python call per row when the view paints), show their status
badge in the thumbnail and request thumbnails only for the rows in view; the training charts are drawn
once per new point, not once per repaint; the window hands the GIL over every 0.5 ms and freezes the
long-lived heap once a model is loaded. The stall probe says how long a stall was and where the GUI
thread was meanwhile.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from PIL import Image
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from stall_probe import StallProbe

from app.project.records import ImageStatus
from app.ui import interpreter
from app.ui.interpreter import GUI_SWITCH_INTERVAL_S
from app.ui.main_window import MainWindow
from app.ui.panels.curve_chart import SERIES_COLORS, CurveChart
from app.ui.panels.image_browser import (
    BADGE_SIZE,
    ICON_SIZE,
    STATUS_COLORS,
    ImageIdRole,
    StatusRole,
)
from app.workers.image_loader import ImageLoader
from maskrcnn_core.protocol import LOSS_KEYS

pytestmark = pytest.mark.gui


def _folder(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"img_{i:04d}.png")
    return folder


def _badge_color(window: MainWindow, row: int) -> QColor:
    icon = window.browser.model().index(row, 0).data(Qt.ItemDataRole.DecorationRole)
    centre = ICON_SIZE - 2 - BADGE_SIZE // 2
    return icon.toImage().pixelColor(centre, centre)


def test_browser_rows_show_status_badges_and_load_only_visible_thumbnails(qtbot, tmp_path, monkeypatch):
    requested: list[int] = []
    load_thumbnail = ImageLoader.load_thumbnail

    def recording_load_thumbnail(loader: ImageLoader, image_id: int, path: Path) -> None:
        requested.append(image_id)
        load_thumbnail(loader, image_id, path)

    monkeypatch.setattr(ImageLoader, "load_thumbnail", recording_load_thumbnail)
    window = open_with_fake_model(qtbot, _folder(tmp_path, 300), tmp_path)
    model = window.browser.model()
    assert model.rowCount() == 300
    qtbot.waitUntil(lambda: len(requested) >= 5, timeout=10_000)
    qtbot.wait(300)
    # The rows in view and a screenful below them, not the whole folder.
    rows_in_view = window.browser.viewport().height() // window.browser.sizeHintForRow(0) + 1
    assert 5 <= len(set(requested)) <= 2 * rows_in_view + 2 < 300

    assert _badge_color(window, 0) == STATUS_COLORS[ImageStatus.NEW]
    image_id = model.index(0, 0).data(ImageIdRole)
    window.document.set_verified(image_id, True)
    assert ImageStatus(model.index(0, 0).data(StatusRole)) is ImageStatus.VERIFIED
    assert _badge_color(window, 0) == STATUS_COLORS[ImageStatus.VERIFIED]

    window.browser.scrollToBottom()
    last_id = model.index(299, 0).data(ImageIdRole)
    qtbot.waitUntil(lambda: last_id in requested, timeout=10_000)


def test_window_hands_over_the_gil_often_and_freezes_the_heap_once_a_model_is_loaded(
    qtbot, tmp_path, monkeypatch
):
    gc.unfreeze()  # as in a fresh process: nothing frozen yet (an earlier test may have frozen the heap)
    monkeypatch.setattr(interpreter, "_heap_frozen", False)
    window = open_with_fake_model(qtbot, _folder(tmp_path, 2), tmp_path)
    assert sys.getswitchinterval() == pytest.approx(GUI_SWITCH_INTERVAL_S)
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # torch and the app's modules are out of the collector's walks
    kept = [object() for _ in range(100)]
    window.segmentation.modelChanged.emit(window.segmentation.model)  # another model: frozen only once
    assert gc.get_freeze_count() == frozen and kept
    window.close()


def test_chart_draws_new_points_and_keeps_its_drawing_for_plain_repaints(qtbot):
    chart = CurveChart("loss", log_y=True)
    qtbot.addWidget(chart)
    chart.resize(400, 250)
    chart.show()
    chart.set_x_max(100)
    for i in range(1, 101):
        chart.add_point("total_loss", i, 1.0 / i)
    image = chart.grab().toImage()
    color = QColor(SERIES_COLORS[0])

    def near(pixel: QColor) -> bool:
        return (
            abs(pixel.red() - color.red())
            + abs(pixel.green() - color.green())
            + abs(pixel.blue() - color.blue())
            < 90
        )

    columns = {x for x in range(60, 390, 4) for y in range(60, 230) if near(image.pixelColor(x, y))}
    assert len(columns) > 60  # the curve runs across the plot (the legend swatch is above y=60)
    drawn = chart._picture
    chart.repaint()
    assert chart._picture is drawn  # a plain repaint copies the drawing
    chart.add_point("total_loss", 100, 0.005)
    assert chart._picture is None  # a new point redraws


@pytest.mark.parametrize("width", [300, 600])
def test_the_charts_legend_wraps_to_fit_a_narrow_dock(qtbot, width):
    """Seen in the Training dock (about 300 px wide): three legend columns of 120 px cut the loss names
    off ("rpn_re", "mask_")."""
    chart = CurveChart("Training losses (log scale)", log_y=True)
    qtbot.addWidget(chart)
    chart.resize(width, 250)
    for name in LOSS_KEYS:
        chart.add_point(name, 1, 0.5)
    rects = chart.legend_rects()
    metrics = chart.fontMetrics()
    assert len(rects) == len(LOSS_KEYS)
    for rect, name in zip(rects, LOSS_KEYS, strict=True):
        assert rect.right() <= width
        assert rect.left() + 16 + metrics.horizontalAdvance(name) <= rect.right()  # the whole name fits
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1 :])
    if width == 600:  # room for three columns, as the legend always had
        assert len({rect.top() for rect in rects}) == 2


def test_stall_probe_reports_how_long_and_where(qtbot):
    def block_the_gui_thread() -> None:
        time.sleep(0.15)

    def keep_the_gui_thread_busy() -> None:
        end = time.thread_time() + 0.15
        while time.thread_time() < end:
            pass

    probe = StallProbe()
    QTimer.singleShot(50, block_the_gui_thread)
    QTimer.singleShot(400, keep_the_gui_thread_busy)
    qtbot.wait(800)
    worst = probe.stop()
    assert 0.12 < worst < 0.5
    assert probe.worst_unstolen <= worst
    report = probe.report()
    assert "block_the_gui_thread" in report and "keep_the_gui_thread_busy" in report
    assert f"{worst * 1000:.0f} ms at" in report
    busy = next(s for s in probe.stalls if "keep_the_gui_thread_busy" in "".join(s.stacks))
    asleep = next(s for s in probe.stalls if "block_the_gui_thread" in "".join(s.stacks))
    assert busy.gui_cpu_seconds >= 0.14 and asleep.gui_cpu_seconds < 0.05
