"""File ▸ Import folder… in a real window (offscreen) on a real project: a YOLO dataset comes in as it is,
label images without a class table ask for the one category of every instance (Cancel imports nothing),
and a folder that is neither is one line."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import FakePredictor
from PIL import Image
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

H, W = 30, 40


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(folder / "p.png")
    win = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(win)
    assert win.open_folder(folder)
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _t, text, *a: shown.append(text))
    monkeypatch.setattr(QMessageBox, "critical", lambda _p, _t, text, *a: shown.append("error: " + text))
    win.shown = shown
    return win


def _choose(monkeypatch, folder) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))


def _label_folder(tmp_path):
    labels = np.zeros((H, W), np.uint16)
    labels[2:10, 2:10] = 1
    labels[15:25, 20:35] = 2
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(labels).save(folder / "p.png")
    return folder


def test_label_images_without_a_table_ask_for_the_category(window, tmp_path, monkeypatch):
    _choose(monkeypatch, _label_folder(tmp_path))
    asked: list[str] = []
    monkeypatch.setattr(
        QInputDialog, "getText", lambda _p, _t, label, *a, **k: asked.append(label) or ("", False)
    )
    window.import_folder()
    assert asked and "no class table" in asked[0]
    assert window.document.store.instances() == [] and window.shown == []  # cancelled: nothing imported
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("nucleus", True))
    window.import_folder()
    assert "Imported 2 annotations on 1 images" in window.shown[-1]
    assert [c.name for c in window.document.categories()] == ["nucleus"]
    assert sorted(r.area for r in window.document.instances(window.document.images()[0].id)) == [64, 150]


def test_a_yolo_dataset_and_a_folder_that_is_neither(window, tmp_path, monkeypatch):
    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "data.yaml").write_text("names: [leaf]\n")
    (yolo / "labels" / "p.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    _choose(monkeypatch, yolo)
    window.import_folder()
    assert "Imported 1 annotations on 1 images" in window.shown[-1]
    empty = tmp_path / "empty"
    empty.mkdir()
    _choose(monkeypatch, empty)
    window.import_folder()
    assert window.shown[-1].startswith("error: ") and "nothing to import here" in window.shown[-1]
