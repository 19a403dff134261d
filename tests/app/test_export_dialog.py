"""File ▸ Export in a real window on a real project: one dialog (file, format, which images) that starts
from the project's last choices; the export goes through the document; a bad path is one line and leaves
the project untouched."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox

import app.ui.main_window as main_window_module
from app.project.export_options import EXPORT_ALL_IMAGES, EXPORT_FORMATS, EXPORT_IMAGES, FOLDER_FORMATS
from app.project.records import ImageStatus
from app.project.settings import ProjectSettings
from app.ui.export_dialog import ExportChoices, ExportDialog

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, images_folder, tmp_path):
    win = open_with_fake_model(qtbot, images_folder, tmp_path)
    with qtbot.waitSignal(win.segmentation.jobFinished, timeout=20_000):
        win.segment_all_action.trigger()
    return win


def _answer(monkeypatch, choices):
    """Make the export dialog answer ``choices``; returns the defaults it was opened with."""
    asked: list[ExportChoices] = []
    monkeypatch.setattr(
        main_window_module, "ask_export", lambda defaults, _parent: asked.append(defaults) or choices
    )
    return asked


def test_the_dialog_offers_every_format_and_selection_and_returns_what_is_chosen(qtbot, tmp_path):
    defaults = ExportChoices(tmp_path / "last.json", "polygon", "verified")
    dialog = ExportDialog(defaults)
    qtbot.addWidget(dialog)
    assert [dialog.format_box.itemData(i) for i in range(dialog.format_box.count())] == list(EXPORT_FORMATS)
    assert [dialog.images_box.itemData(i) for i in range(dialog.images_box.count())] == list(EXPORT_IMAGES)
    assert dialog.choices() == defaults
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    dialog.path_edit.clear()
    assert not save.isEnabled()  # no file, no export
    dialog.path_edit.setText(str(tmp_path / "out.json"))
    dialog.images_box.setCurrentIndex(dialog.images_box.findData(EXPORT_ALL_IMAGES))
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Accepted
    chosen = dialog.choices()
    assert (
        chosen == ExportChoices(tmp_path / "out.json", "polygon", EXPORT_ALL_IMAGES) and chosen.only is None
    )


def test_export_writes_the_file_and_the_project_remembers_the_choices(window, tmp_path, monkeypatch):
    doc = window.document
    verified = doc.images()[0].id
    doc.set_verified(verified, True)
    out = tmp_path / "out" / "verified.json"
    out.parent.mkdir()
    asked = _answer(monkeypatch, ExportChoices(out, "polygon", "verified"))
    window.export_action.trigger()
    assert asked[0] == ExportChoices(
        doc.folder / "annotations.json", "rle", EXPORT_ALL_IMAGES
    )  # the defaults
    coco = json.loads(out.read_text())
    assert [image["id"] for image in coco["images"]] == [verified]
    assert len(coco["annotations"]) == len(doc.visible_instances(verified)) > 0
    assert all(isinstance(a["segmentation"], list) for a in coco["annotations"])  # polygons
    assert "Exported" in window.statusBar().currentMessage()
    settings = ProjectSettings(doc.store)
    assert (settings.export_path, settings.export_format, settings.export_images) == (
        str(out),
        "polygon",
        "verified",
    )
    asked = _answer(monkeypatch, None)  # opened again, then cancelled
    window.export_action.trigger()
    assert asked[0] == ExportChoices(out, "polygon", "verified")
    assert sum(1 for image in doc.images() if image.status is ImageStatus.VERIFIED) == 1
    window.close()


@pytest.mark.parametrize("where", ["project folder", "under a file", "a folder"])
def test_a_bad_path_is_one_line_and_the_project_is_untouched(window, tmp_path, monkeypatch, where):
    doc = window.document
    project_dir = doc.store.db_path.parent
    path = {
        "project folder": project_dir / "export.json",
        "under a file": tmp_path / "fake.pt" / "export.json",
        "a folder": tmp_path,
    }[where]
    before = (doc.store.instances(), sorted(p.name for p in project_dir.iterdir()))
    errors: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _parent, _title, text, *a: errors.append(text))
    _answer(monkeypatch, ExportChoices(path, "rle", EXPORT_ALL_IMAGES))
    window.export_action.trigger()
    assert len(errors) == 1 and "\n" not in errors[0] and str(path) in errors[0], errors
    assert (doc.store.instances(), sorted(p.name for p in project_dir.iterdir())) == before
    assert not (project_dir / "export.json").exists()
    assert ProjectSettings(doc.store).export_path is None  # a refused export is not remembered
    window.close()


@pytest.mark.parametrize("folder_format", FOLDER_FORMATS)
def test_folder_formats_export_a_folder_from_the_window(window, tmp_path, monkeypatch, folder_format):
    doc = window.document
    verified = doc.images()[0]
    doc.set_verified(verified.id, True)
    out = tmp_path / "dataset"
    _answer(monkeypatch, ExportChoices(out, folder_format, "verified"))
    window.export_action.trigger()
    assert "Exported: wrote" in window.statusBar().currentMessage()
    instances = len(doc.visible_instances(verified.id))
    stem = verified.file_name.rsplit(".", 1)[0]
    if folder_format == "yolo":
        assert (out / "data.yaml").is_file()
        assert len((out / "labels" / "train" / f"{stem}.txt").read_text().splitlines()) == instances
    else:
        suffix = ".png" if folder_format == "label-png" else ".tif"
        labels = cv2.imread(str(out / f"{stem}{suffix}"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16 and int(labels.max()) == instances
    assert ProjectSettings(doc.store).export_format == folder_format
    errors: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _parent, _title, text, *a: errors.append(text))
    _answer(monkeypatch, ExportChoices(out, folder_format, "verified"))  # the same folder again: not empty
    window.export_action.trigger()
    assert len(errors) == 1 and "not empty" in errors[0]
    assert "--out" not in errors[0]  # the window has no --out: the command line's flag meant nothing there
    window.close()
