"""End to end with the real predictor and the bundled demo model: open, auto-segment, check the result.

Skipped only while ``app/resources/models/demo.pt`` does not exist yet.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from app.project.model_sources import DEMO_MODEL
from app.project.records import ImageStatus, Provenance
from app.ui.main_window import MainWindow

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet"),
]


def test_auto_segment_with_the_demo_model(qtbot, tmp_path, synthetic_dataset):
    folder = tmp_path / "images"
    folder.mkdir()
    names = ["train_000000.png", "train_000001.png"]
    for name in names:
        (folder / name).write_bytes((synthetic_dataset.parent / "images" / name).read_bytes())
    window = MainWindow()  # the real predictor, built in the worker thread
    qtbot.addWidget(window)
    assert window.open_folder(folder, weights=str(DEMO_MODEL))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=120_000)
    assert window.device_label.text().startswith("Device: ")
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=300_000):
        window.segment_all_action.trigger()
    store = window.document.store
    truth = COCO(str(synthetic_dataset))
    by_name = {im["file_name"]: im["id"] for im in truth.loadImgs(truth.getImgIds())}
    for image in store.images():
        assert image.status is ImageStatus.PREDICTED
        records = [r for r in store.instances(image.id) if r.score >= window.document.score_threshold]
        assert records and all(r.provenance is Provenance.PREDICTED for r in records)
        gt = [truth.annToRLE(a) for a in truth.loadAnns(truth.getAnnIds(imgIds=[by_name[image.file_name]]))]
        ious = mask_utils.iou([r.rle for r in records], gt, [0] * len(gt))
        # Most objects are found: the best prediction for each true shape overlaps it well.
        assert np.median(ious.max(axis=0)) > 0.5
    current = window.document.current_image_id
    qtbot.waitUntil(lambda: len(window.canvas.instance_ids()) > 0, timeout=10_000)
    assert sorted(window.canvas.instance_ids()) == sorted(
        r.id for r in window.document.visible_instances(current)
    )
    window.close()
