"""Fine-tune from the menu, end to end on CPU: the correct → fine-tune → re-segment loop.

A synthetic folder whose truth is imported and verified for most images, including classes the demo
model has never seen (hexagon, ellipse); Model ▸ Fine-tune… with real clicks in the dialog; a real
training process from the bundled demo model; the base model scored by a real evaluation process on the
same validation images.
Checked: the training process runs at background priority, a new model version exists and its mask AP
beats the base's, the GUI thread never stalled more than 100 ms meanwhile (timer probe; not counting time
the hypervisor ran other machines on our CPUs, which stalled an idle window 30-80 ms at a time here), the
new version becomes active (by itself; or, when it lost more than 0.02 mask AP on the classes the demo
model knew, by Use new version, as a person would, after the window said why), and re-segmenting uses it
while the verified images are left exactly as they were.
"""

from __future__ import annotations

import gc
import json
import os
import time

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from stall_probe import StallProbe

from app.project.model_sources import DEMO_MODEL
from app.project.records import ImageStatus, Provenance
from app.project.run_timing import TIMING
from app.session.model_registry import ACTIVATE_AFTER_COMPARISON_MS
from app.ui.finetune_dialog import FinetuneDialog
from app.ui.main_window import MainWindow
from app.workers.training_runner import BACKGROUND_NICENESS

pytestmark = [
    pytest.mark.gui,
    pytest.mark.slow,
    pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet"),
]

BASE_MODEL = DEMO_MODEL
# The user's classes: two the demo model knows (circle, ring) and two it has never seen (hexagon, ellipse),
# as when someone starts correcting a folder with their own labels. A run where the new version only
# re-learns classes the base already knows was too close to call on a handful of validation images
# (0.419 -> 0.426 once, a loss another time); with new classes the gain is the point of fine-tuning.
CLASSES = ("circle", "ring", "hexagon", "ellipse")
NUM_IMAGES, NUM_VERIFIED = 40, 34
ITERATIONS, LR = 80, 0.02
STALL_BUDGET_S = 0.100


@pytest.fixture
def folder_with_truth(tmp_path):
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    truth_path = generate_synthetic_dataset(
        tmp_path / "data", num_images=NUM_IMAGES, seed=21, class_names=CLASSES
    )
    truth = json.loads(truth_path.read_text())
    verified = {im["id"] for im in truth["images"][:NUM_VERIFIED]}
    part = dict(
        truth,
        images=[im for im in truth["images"] if im["id"] in verified],
        annotations=[a for a in truth["annotations"] if a["image_id"] in verified],
    )
    part_path = tmp_path / "verified.json"
    part_path.write_text(json.dumps(part))
    return tmp_path / "data" / "images", part_path


def _fill_and_accept(qtbot) -> None:
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, FinetuneDialog)
    train, val = dialog.split()
    assert len(train) + len(val) == NUM_VERIFIED and val
    dialog.length_unit.setCurrentText("iterations")
    dialog.iterations.setValue(ITERATIONS)
    dialog.lr.setValue(LR)
    dialog.device.setCurrentText("cpu")
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


def test_finetune_from_the_menu_beats_the_base_and_resegments(qtbot, folder_with_truth):
    folder, verified_json = folder_with_truth
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_folder(folder, weights=str(BASE_MODEL))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=120_000)
    doc, store = window.document, window.document.store
    window.import_annotation_file(verified_json)
    for image in doc.images():
        if image.status is ImageStatus.CORRECTED:
            doc.set_verified(image.id, True)
    base_version = window.segmentation.model_version_id
    verified_before = {
        im.id: [(r.id, r.rle["counts"], r.provenance) for r in store.instances(im.id)]
        for im in store.images()
        if im.status is ImageStatus.VERIFIED
    }
    assert len(verified_before) == NUM_VERIFIED

    started = time.monotonic()
    QTimer.singleShot(0, lambda: _fill_and_accept(qtbot))
    window.finetune_action.trigger()  # Model ▸ Fine-tune… (returns once the dialog is accepted)
    finetune = window.finetune
    assert finetune.running
    # The training process runs at background priority: with every core training, the window still gets one.
    training_pid, own_niceness = finetune.runner.pid, os.getpriority(os.PRIO_PROCESS, 0)
    qtbot.waitUntil(
        lambda: os.getpriority(os.PRIO_PROCESS, training_pid) == own_niceness + BACKGROUND_NICENESS,
        timeout=30_000,
    )
    # This process holds everything the test session has loaded so far; a full garbage collection of that
    # heap stalled this thread for 300 ms in a whole-suite run (64-70 ms when the test runs alone, as the
    # app's own process would). Freezing it measures the app, not the test runner's leftovers.
    gc.collect()
    gc.freeze()
    probe = StallProbe()  # from here on the user keeps working while the model trains
    qtbot.waitUntil(lambda: finetune.comparison is not None, timeout=300_000)
    comparison = finetune.comparison
    print("\n" + "\n".join(f"{r.name:12} {r.base_ap} -> {r.new_ap}" for r in comparison.rows))
    assert comparison.overall.new_ap > comparison.overall.base_ap  # before waiting for the switch it causes
    print(f"timing: {store.training_runs()[-1].metrics.get(TIMING)}")
    if comparison.forgets_known_classes:
        # Better overall but worse on the classes the demo model knew: not activated by itself, and the
        # window says why; the person switches by hand, as the verdict offers.
        assert window.registry.active_id == base_version and not comparison.activates
        assert "mask AP on the classes" in window.training_panel.verdict.text()
        qtbot.wait(ACTIVATE_AFTER_COMPARISON_MS)  # a person reads the verdict first (see the registry)
        qtbot.mouseClick(window.training_panel.use_new_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.segmentation.model_version_id == finetune.new_version_id, timeout=60_000)
    elapsed = time.monotonic() - started
    probe.stop()
    gc.unfreeze()
    print(
        f"Fine-tune -> active new model: {elapsed:.1f} s; worst GUI stall {probe.worst * 1000:.0f} ms, "
        f"{probe.worst_unstolen * 1000:.0f} ms less the time the hypervisor took"
    )
    print(probe.report())
    with open(finetune.run.val_json, encoding="utf-8") as f:
        assert comparison.num_images == len(json.load(f)["images"])
    assert probe.worst_unstolen < STALL_BUDGET_S, probe.report()
    new = next(v for v in store.model_versions() if v.id == finetune.new_version_id)
    run = store.training_runs()[-1]
    assert new.training_run_id == run.id and run.base_model_version_id == base_version
    assert run.config["num_train_images"] + run.config["num_val_images"] == NUM_VERIFIED
    assert {"hexagon", "ellipse"} <= {n for _, n in new.categories}
    assert run.metrics["validation"]["segm"]["ap"] == comparison.overall.new_ap
    assert window.registry.active_id == new.id and window.registry.settings.active_version_id == new.id
    assert window.versions_panel.active_name() == new.name
    assert window.training_panel.table.rowCount() == len(comparison.rows)
    assert window.training_panel.resegment_button.isEnabled()

    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=120_000):
        qtbot.mouseClick(window.training_panel.resegment_button, Qt.MouseButton.LeftButton)
    resegmented = [im for im in store.images() if im.id not in verified_before]
    assert len(resegmented) == NUM_IMAGES - NUM_VERIFIED
    for image in resegmented:
        records = store.instances(image.id)
        assert records and all(
            r.provenance is Provenance.PREDICTED and r.model_version_id == new.id for r in records
        )
    for image_id, instances in verified_before.items():
        assert [(r.id, r.rle["counts"], r.provenance) for r in store.instances(image_id)] == instances
    losses = window.training_panel.loss_chart.series()
    window.close()

    # Reopened, the project shows the run as it was left, and keeps the new version active.
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_folder(folder)
    panel = again.training_panel
    assert run.config["name"] in panel.title.text()
    assert panel.loss_chart.series() == losses and losses["total_loss"][-1][0] == ITERATIONS
    assert panel.table.rowCount() == len(comparison.rows)
    assert panel.table.item(0, 2).text() == f"{comparison.overall.new_ap:.3f}"
    qtbot.waitUntil(lambda: again.segmentation.model_version_id == new.id, timeout=120_000)
    assert panel.resegment_button.isEnabled()
    again.close()
