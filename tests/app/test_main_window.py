"""The main window end to end, offscreen, with a fake predictor that returns real Predictions.

Open a folder, auto-segment, check the canvas and the store; cancel; edit during a run; close and
reopen; bad files; a second window on the same project.
"""

from __future__ import annotations

import re
import struct
import sys
import threading
import zlib
from pathlib import Path

import pytest
from fake_predictor import FakePredictor
from PySide6.QtWidgets import QMessageBox

from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.settings import ProjectSettings
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def _window(qtbot, predictor: FakePredictor) -> MainWindow:
    window = MainWindow(predictor_factory=lambda _source: lambda: predictor)
    qtbot.addWidget(window)
    return window


def _open(qtbot, window: MainWindow, folder: Path, tmp_path: Path, *, wait_image: bool = True) -> None:
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"not really a checkpoint: the fake predictor ignores it")
    assert window.open_folder(folder, weights=str(weights))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=5000)
    if wait_image:
        qtbot.waitUntil(window.canvas.has_image, timeout=5000)


def _run_all(qtbot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=20_000):
        window.segment_all_action.trigger()


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` (no real pixel data): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_open_auto_segment_all_and_filter(qtbot, images_folder, tmp_path):
    predictor = FakePredictor()
    window = _window(qtbot, predictor)
    _open(qtbot, window, images_folder, tmp_path)
    doc = window.document
    assert window.browser.model().rowCount() == 6
    _run_all(qtbot, window)
    # The worker thread ran the predictor, not the GUI thread.
    assert predictor.thread_names == {"inference"} or "MainThread" not in predictor.thread_names
    store = doc.store
    for image in store.images():
        records = store.instances(image.id)
        assert sorted(r.score for r in records) == pytest.approx([0.3, 0.9])
        assert all(r.provenance is Provenance.PREDICTED and r.model_version_id is not None for r in records)
        assert image.status is ImageStatus.PREDICTED
    # Canvas and instance list show the current image's instances above the threshold (0.5 by default).
    current = doc.current_image_id
    visible = [r.id for r in store.instances(current) if r.score >= 0.5]
    qtbot.waitUntil(lambda: window.canvas.instance_ids() == visible, timeout=3000)
    assert window.instance_list.instance_ids() == visible
    # The score slider re-filters without running the model again.
    calls = len(predictor.calls)
    window.view_controls.score_slider.setValue(20)
    assert sorted(window.canvas.instance_ids()) == sorted(r.id for r in store.instances(current))
    assert len(predictor.calls) == calls
    assert ProjectSettings(store).score_threshold == pytest.approx(0.2)
    assert window.category_panel.count() == 2
    window.close()


def test_cancel_mid_run_keeps_finished_results(qtbot, images_folder, tmp_path):
    predictor = FakePredictor(delay=0.3)
    window = _window(qtbot, predictor)
    _open(qtbot, window, images_folder, tmp_path)
    seg = window.segmentation
    with qtbot.waitSignal(seg.jobFinished, timeout=20_000) as finished:
        window.segment_all_action.trigger()
        assert not window.run_progress.isHidden()
        qtbot.waitUntil(lambda: window.run_progress.bar.value() >= 1, timeout=5000)
        window.run_progress.cancel_button.click()
    assert finished.args[1] is True  # cancelled
    done = [i for i in window.document.store.images() if i.status is ImageStatus.PREDICTED]
    assert 1 <= len(done) < 6
    assert window.run_progress.isHidden()
    window.close()


def test_result_arriving_after_an_edit_does_not_overwrite_it(qtbot, images_folder, tmp_path):
    gate = threading.Event()
    predictor = FakePredictor(gate=gate, gate_on="train_000002.png")
    window = _window(qtbot, predictor)
    _open(qtbot, window, images_folder, tmp_path)
    doc = window.document
    target = doc.store.image_by_name("train_000002.png").id
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=20_000):
        window.segment_all_action.trigger()
        qtbot.waitUntil(lambda: any(c.endswith("train_000002.png") for c in predictor.calls), timeout=5000)
        # The model is busy on the image; the person draws an instance on it meanwhile.
        try:
            (drawn,) = doc.apply_edit(target, add=[_square(doc, target)])
        finally:
            gate.set()
    records = doc.store.instances(target)
    assert [(r.id, r.provenance) for r in records] == [(drawn, Provenance.EDITED)]
    assert doc.image(target).status is ImageStatus.CORRECTED
    # Other images got their predictions.
    others = [i for i in doc.store.images() if i.id != target]
    assert all(len(doc.store.instances(i.id)) == 2 for i in others)
    # Re-running on the edited image replaces nothing of the person's and adds only non-duplicates.
    doc.set_current_image(target)
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=20_000):
        window.segment_image_action.trigger()
    kinds = sorted((r.provenance.value, r.score) for r in doc.store.instances(target))
    assert kinds == [
        ("edited", None),
        ("predicted", pytest.approx(0.3)),
    ]  # the 0.9 square duplicated the edit
    window.close()


def _square(doc, image_id: int) -> NewInstance:
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    with Image.open(doc.image_path(image_id)) as im:
        w, h = im.size
    full = np.zeros((h, w), dtype=np.uint8)
    full[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    rle["counts"] = rle["counts"].decode("ascii")
    (cat,) = doc.ensure_categories(["square"]).values()
    return NewInstance(
        category_id=cat,
        rle=rle,
        box=(w // 4, h // 4, 3 * w // 4, 3 * h // 4),
        area=int(full.sum()),
        provenance=Provenance.EDITED,
    )


def test_close_and_reopen_restores_everything(qtbot, images_folder, tmp_path):
    window = _window(qtbot, FakePredictor())
    _open(qtbot, window, images_folder, tmp_path)
    _run_all(qtbot, window)
    doc = window.document
    last = doc.images()[3].id
    doc.set_current_image(last)
    window.view_controls.score_slider.setValue(25)
    window.view_controls.opacity_slider.setValue(70)
    before = [(r.id, r.rle["counts"], r.provenance) for r in doc.store.instances()]
    window.close()
    assert window.document is None

    again = _window(qtbot, FakePredictor())
    _open(qtbot, again, images_folder, tmp_path)  # no weights passed twice: the project remembers the model
    doc = again.document
    assert doc.current_image_id == last
    assert again.browser.currentIndex().row() == 3
    assert doc.score_threshold == pytest.approx(0.25)
    assert again.view_controls.score_slider.value() == 25
    assert (again.canvas.opacity, again.view_controls.opacity_slider.value()) == (pytest.approx(0.7), 70)
    assert [(r.id, r.rle["counts"], r.provenance) for r in doc.store.instances()] == before
    assert again.registry.active().path.endswith("fake.pt")
    qtbot.waitUntil(lambda: len(again.canvas.instance_ids()) == 2, timeout=3000)
    again.close()


def test_bad_files_get_an_error_mark_and_never_crash(qtbot, images_folder, tmp_path):
    (images_folder / "zero.png").write_bytes(b"")
    (images_folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    (images_folder / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic")
    _png_header_only(images_folder / "huge.png", 40000, 40000)  # past even the tiled view's limit
    (images_folder / "notes.txt").write_text("not an image: not listed")
    predictor = FakePredictor()
    window = _window(qtbot, predictor)
    _open(qtbot, window, images_folder, tmp_path, wait_image=False)
    doc = window.document
    names = [i.file_name for i in doc.images()]
    assert "notes.txt" not in names and len(names) == 10
    window.resize(1000, 1400)  # every row visible, so every thumbnail is requested
    window.show()
    qtbot.waitExposed(window)
    bad = {"zero.png": "empty", "corrupt.jpg": "", "photo.heic": "not supported", "huge.png": ""}
    ids = {name: doc.store.image_by_name(name).id for name in bad}
    qtbot.waitUntil(lambda: all(doc.image_error(i) for i in ids.values()), timeout=10_000)
    for name, expected in bad.items():
        assert expected in doc.image_error(ids[name]), (name, doc.image_error(ids[name]))
    assert re.search("pixel|too large", doc.image_error(ids["huge.png"]))
    # Showing a bad image puts its message on the canvas instead of crashing.
    doc.set_current_image(ids["corrupt.jpg"])
    assert "corrupt.jpg" in window.canvas.message()
    # Auto-segment all skips them.
    _run_all(qtbot, window)
    assert not any(c.endswith(tuple(bad)) for c in predictor.calls)
    assert len(predictor.calls) == 6
    window.close()


def test_second_window_on_the_same_project_is_refused(qtbot, images_folder, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, title, text, *a: warnings.append(text))
    first = _window(qtbot, FakePredictor())
    _open(qtbot, first, images_folder, tmp_path)
    second = _window(qtbot, FakePredictor())
    assert not second.open_folder(images_folder)
    assert second.document is None
    assert len(warnings) == 1 and "already open" in warnings[0]
    first.close()
    assert second.open_folder(images_folder)
    second.close()


def test_a_failed_model_load_is_a_message_not_a_crash(qtbot, images_folder, tmp_path):
    def broken():
        raise ValueError("this checkpoint is not a Mask R-CNN")

    window = MainWindow(predictor_factory=lambda _source: broken)
    qtbot.addWidget(window)
    weights = tmp_path / "broken.pt"
    weights.write_bytes(b"x")
    assert window.open_folder(images_folder)
    window.load_model(str(weights))
    qtbot.waitUntil(lambda: "failed" in window.model_label.text(), timeout=5000)
    assert "not a Mask R-CNN" in window.statusBar().currentMessage()
    assert window.segmentation.model is None
    window.segment_all_action.trigger()  # no model: a hint, no crash
    assert "no model is loaded" in window.statusBar().currentMessage()
    window.close()


def test_an_action_while_the_model_loads_says_to_wait_not_to_load_weights(qtbot, images_folder, tmp_path):
    """Seen in the window: Auto-segment all pressed while the model was still being built said "No model
    loaded yet — Model ▸ Load weights…", sending the user to load the model that was on its way."""
    release = threading.Event()
    predictor = FakePredictor()

    def slow_build() -> FakePredictor:
        release.wait(10)
        return predictor

    window = MainWindow(predictor_factory=lambda _source: slow_build)
    qtbot.addWidget(window)
    weights = tmp_path / "slow.pt"
    weights.write_bytes(b"x")
    try:
        assert window.open_folder(images_folder, weights=str(weights))
        window.segment_all_action.trigger()
        message = window.statusBar().currentMessage()
        assert "still loading (slow.pt)" in message and "Load weights" not in message
        image = window.document.current_image_id
        window.editor.tools["box"].prompter.request(image, (1.0, 1.0, 20.0, 20.0))
        assert "Box prompt: the model is still loading" in window.statusBar().currentMessage()
    finally:
        release.set()
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=5000)
    window.segment_all_action.trigger()  # once it is there, the same action runs
    qtbot.waitUntil(lambda: bool(predictor.calls), timeout=5000)
    window.close()


def test_the_gui_process_never_imports_torch(images_folder, tmp_path):
    """Open a folder and auto-segment in a fresh process; torch must not be loaded by the app itself."""
    code = f"""
import sys
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).resolve().parents[2])!r}]
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QEventLoop, QTimer
from fake_predictor import FakePredictor
from app.ui.main_window import MainWindow
app = QApplication([])
w = MainWindow(predictor_factory=lambda s: (lambda: FakePredictor()))
open({str(tmp_path / "w.pt")!r}, "wb").write(b"x")
w.open_folder({str(images_folder)!r}, weights={str(tmp_path / "w.pt")!r})
loop = QEventLoop()
w.segmentation.modelChanged.connect(lambda m: w.auto_segment_all())
w.segmentation.jobFinished.connect(lambda *a: loop.quit())
QTimer.singleShot(20000, loop.quit)
loop.exec()
print(len(w.document.store.instances()), "torch" in sys.modules)
w.close()
"""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.stdout.split() == ["12", "False"], out.stdout + out.stderr
