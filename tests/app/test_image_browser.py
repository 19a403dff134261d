"""The image list in a real window on a real project: it keeps the document's current image selected
(after an import that rebuilds the list too); its status filter, kept per project, and legend."""

from __future__ import annotations

import json

import pytest
from fake_predictor import open_with_fake_model
from PIL import Image

from app.project.records import ImageStatus
from app.project.settings import IMAGE_FILTER_ALL, IMAGE_FILTER_ERROR, ProjectSettings

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


def _shown_names(window) -> list[str]:
    proxy = window.browser.model()
    return [proxy.index(row, 0).data() for row in range(proxy.rowCount())]


def test_the_status_filter_shows_one_status_and_is_kept_per_project(qtbot, folder, tmp_path):
    (folder / "broken.png").write_bytes(b"")  # an unusable file: the error filter's
    window = open_with_fake_model(qtbot, folder, tmp_path)
    doc = window.document
    panel = window.image_panel
    assert window.browser_dock.widget() is panel and panel.filter_box.currentData() == IMAGE_FILTER_ALL
    ids = {image.file_name: image.id for image in doc.images()}
    qtbot.waitUntil(lambda: bool(doc.image_error(ids["broken.png"])), timeout=5000)
    doc.set_verified(ids["b.png"], True)
    panel.filter_box.setCurrentIndex(panel.filter_box.findData(ImageStatus.VERIFIED.value))
    assert _shown_names(window) == ["b.png"]
    assert ProjectSettings(doc.store).image_filter == ImageStatus.VERIFIED.value
    panel.filter_box.setCurrentIndex(panel.filter_box.findData(IMAGE_FILTER_ERROR))
    assert _shown_names(window) == ["broken.png"]
    panel.filter_box.setCurrentIndex(panel.filter_box.findData(ImageStatus.NEW.value))
    assert _shown_names(window) == ["a.png", "d.png"]
    # Filtering is not choosing: the image on the canvas stays, and is selected when it is in the list.
    current = doc.current_image_id
    assert doc.image(current).file_name == "a.png" and _selected_row(window) == 0
    doc.set_verified(current, True)  # it leaves the "new" list; the canvas stays on it
    assert _shown_names(window) == ["d.png"] and doc.current_image_id == current
    assert not window.browser.currentIndex().isValid()
    # The legend names every status mark.
    for status in ImageStatus:
        assert status.value in panel.legend.text()
    assert IMAGE_FILTER_ERROR in panel.legend.text()
    window.close()

    again = open_with_fake_model(qtbot, folder, tmp_path)
    assert again.image_panel.filter_box.currentData() == ImageStatus.NEW.value
    assert _shown_names(again) == ["d.png"]
    again.close()


def test_a_bad_stored_filter_reads_as_all_and_a_bad_one_is_refused(qtbot, folder, tmp_path):
    window = open_with_fake_model(qtbot, folder, tmp_path)
    settings = ProjectSettings(window.document.store)
    window.document.store.set_setting(ProjectSettings.image_filter.key, "sideways")
    assert settings.image_filter == IMAGE_FILTER_ALL
    with pytest.raises(ValueError, match="image_filter"):
        settings.image_filter = "sideways"
    with pytest.raises(ValueError, match="no image filter"):
        window.browser.set_status_filter("sideways")
    window.close()
