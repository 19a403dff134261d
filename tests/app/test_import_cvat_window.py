"""The window asks before importing a CVAT-style COCO file (every mask an ``iscrowd: 1`` RLE): Import as
instances, Import as crowd regions, or Cancel; the answer decides, and the report says which. A real
window (pytest-qt, offscreen), a real project file; the question is answered by clicking its button."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import FakePredictor
from PIL import Image
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from test_import_cvat_and_predictions import H, W, _cvat_file

from app.ui.dialogs import CROWD_AS_CROWD, CROWD_AS_INSTANCES
from app.ui.main_window import MainWindow

pytestmark = pytest.mark.gui


def _answer(button_text: str, asked: list[str]) -> None:
    def click() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        asked.append(box.text())
        (button,) = [b for b in box.buttons() if b.text() == button_text]
        button.click()

    QTimer.singleShot(0, click)


@pytest.mark.parametrize(
    ("answer", "crowd"), [(CROWD_AS_INSTANCES, False), (CROWD_AS_CROWD, True), ("Cancel", None)]
)
def test_the_window_asks_and_the_answer_decides(qtbot, tmp_path, monkeypatch, answer, crowd):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(folder / "p.png")
    cvat = _cvat_file(tmp_path)
    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    assert window.open_folder(folder)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(cvat), ""))
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text, *a: shown.append(text))
    asked: list[str] = []
    _answer(answer, asked)
    window.import_coco_file()
    assert asked and "crowd region" in asked[0]
    instances = window.document.store.instances()
    if crowd is None:
        assert instances == [] and shown == []
        return
    assert [r.iscrowd for r in instances] == [crowd, crowd]
    assert ("imported as crowd regions" if crowd else "imported as instances") in shown[0]
