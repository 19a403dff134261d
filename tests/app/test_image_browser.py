"""The image list in a real window on a real project: it keeps the document's current image selected
(after an import that rebuilds the list too)."""

from __future__ import annotations

import json

import pytest
from fake_predictor import open_with_fake_model
from PIL import Image

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png", "d.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    return folder


def _coco(path, file_names):
    """A COCO file with one square on each of ``file_names``."""
    images = [{"id": i, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(file_names, 1)]
    square = [[10, 10, 30, 10, 30, 30, 10, 30]]
    annotations = [
        {
            "id": i,
            "image_id": i,
            "category_id": 1,
            "segmentation": square,
            "bbox": [10, 10, 20, 20],
            "area": 400,
            "iscrowd": 0,
        }
        for i in range(1, len(file_names) + 1)
    ]
    categories = [{"id": 1, "name": "square"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _selected_row(window) -> int:
    return window.browser.currentIndex().row()


def test_the_list_follows_the_current_image(qtbot, folder, tmp_path):
    window = open_with_fake_model(qtbot, folder, tmp_path)
    doc = window.document
    assert _selected_row(window) == doc.row_of(doc.current_image_id) == 0
    window.step_image(1)  # Next image (not a click in the list)
    assert _selected_row(window) == doc.row_of(doc.current_image_id) == 1
    doc.set_current_image(doc.images()[2].id)
    assert _selected_row(window) == 2
    window.close()


def test_an_import_that_adds_images_keeps_the_current_image_shown_and_selected(qtbot, folder, tmp_path):
    window = open_with_fake_model(qtbot, folder, tmp_path)
    doc = window.document
    current = doc.images()[1].id  # b.png
    doc.set_current_image(current)
    qtbot.waitUntil(window.canvas.has_image, timeout=5000)
    Image.new("RGB", (64, 48)).save(folder / "c.png")  # sorts before d.png: the rows after it move
    summary = window.import_annotation_file(_coco(tmp_path / "coco.json", ["b.png", "c.png"]))
    assert (summary.images, summary.added) == (2, 2)
    assert [i.file_name for i in doc.images()] == ["a.png", "b.png", "c.png", "d.png"]
    assert window.browser.model().rowCount() == 4
    assert doc.current_image_id == current
    assert _selected_row(window) == doc.row_of(current) == 1
    # The canvas still shows b.png, now with its imported square.
    want = [r.id for r in doc.visible_instances(current)]
    assert len(want) == 1
    qtbot.waitUntil(lambda: window.canvas.instance_ids() == want, timeout=5000)
    # Going on from there follows the rebuilt list.
    window.step_image(1)
    assert doc.image(doc.current_image_id).file_name == "c.png" and _selected_row(window) == 2
    window.close()
