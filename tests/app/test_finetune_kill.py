"""A training run killed, cancelled or cut off by closing the project: reported, nothing lost, resumed.

Real training processes (``python -m maskrcnn_core train``) on a tiny randomly initialised model, so each
iteration takes a fraction of a second; the window runs with the real predictor.
"""

from __future__ import annotations

import os
import signal

import pytest
from PySide6.QtCore import Qt
from tiny_model import TINY

from app.project.settings import ProjectSettings
from app.session.finetune import FinetuneSettings
from app.ui.main_window import MainWindow
from maskrcnn_core.protocol import (
    LAST_CHECKPOINT,
    METRICS_LOG,
    CheckpointEvent,
    FinishedEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
    parse_event,
)

pytestmark = [pytest.mark.gui, pytest.mark.slow]

CLASSES = ("circle", "square", "triangle", "ring")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A small MobileNetV2-FPN Mask R-CNN for the synthetic classes (random weights, 64-96 px inputs)."""
    import torch

    from maskrcnn_core import mask_rcnn_mobilenet_v2_fpn
    from maskrcnn_core.model.weights import save_checkpoint

    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(
        class_names=CLASSES,
        category_ids=(1, 2, 3, 4),
        **TINY,
    )
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", model, metadata={"name": "tiny"})


def _open_with_truth(qtbot, folder, truth_json, checkpoint) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_folder(folder, weights=str(checkpoint))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=60_000)
    window.import_annotation_file(truth_json)
    return window


def _snapshot(store) -> tuple:
    """Everything a person made: images with status and revision, and every instance."""
    return (
        [(im.file_name, im.status, im.revision) for im in store.images()],
        [(r.id, r.image_id, r.category_id, r.rle["counts"], r.provenance) for r in store.instances()],
        ProjectSettings(store).active_version_id,
    )


def _settings(window: MainWindow, **overrides) -> FinetuneSettings:
    values = dict(
        base_version_id=window.segmentation.model_version_id,
        iterations=24,
        checkpoint_every=2,
        eval_every=0,
        device="cpu",
        num_threads=1,
    )
    return FinetuneSettings(**{**values, **overrides})


def test_kill_mid_run_is_reported_nothing_is_lost_and_resume_finishes(
    qtbot, images_folder, synthetic_dataset, tiny_checkpoint
):
    window = _open_with_truth(qtbot, images_folder, synthetic_dataset, tiny_checkpoint)
    store, finetune, panel = window.document.store, window.finetune, window.training_panel
    before = _snapshot(store)
    active_version = window.segmentation.model_version_id
    checkpoints: list[CheckpointEvent] = []
    finetune.trainingEvent.connect(lambda e: isinstance(e, CheckpointEvent) and checkpoints.append(e))
    finetune.start(_settings(window))
    qtbot.waitUntil(lambda: len(checkpoints) >= 2, timeout=90_000)
    with qtbot.waitSignal(finetune.runEnded, timeout=30_000) as ended:
        os.kill(finetune.runner.pid, signal.SIGKILL)  # as the OOM killer would
    outcome = ended.args[0]
    assert outcome.status is RunStatus.FAILED and "crashed" in outcome.message
    assert "Failed" in panel.figures.text() and "unchanged" in panel.figures.text()
    assert _snapshot(store) == before  # the project and the active model are untouched
    assert window.segmentation.model_version_id == active_version
    assert store.training_runs()[-1].status == RunStatus.FAILED
    assert panel.resume_button.isEnabled()

    starts: list[StartEvent] = []
    finetune.trainingEvent.connect(lambda e: isinstance(e, StartEvent) and starts.append(e))
    qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: finetune.new_version_id is not None, timeout=120_000)
    assert starts and starts[0].start_iteration >= 2  # continued from the checkpoint, not from zero
    run = store.training_runs()[-1]
    assert run.status == RunStatus.FINISHED and len(store.training_runs()) == 1
    new = next(v for v in store.model_versions() if v.training_run_id == run.id)
    assert new.path.endswith("model_final.pt") and os.path.isfile(new.path)
    events = [parse_event(line) for line in open(os.path.join(run.config["run_dir"], METRICS_LOG))]
    assert [e.iteration for e in events if isinstance(e, FinishedEvent)] == [24]
    window.close()


def test_cancel_keeps_the_checkpoint_and_closing_the_project_offers_resume(
    qtbot, images_folder, synthetic_dataset, tiny_checkpoint
):
    window = _open_with_truth(qtbot, images_folder, synthetic_dataset, tiny_checkpoint)
    finetune, panel = window.finetune, window.training_panel
    progress: list[ProgressEvent] = []
    finetune.trainingEvent.connect(lambda e: isinstance(e, ProgressEvent) and progress.append(e))
    finetune.start(_settings(window, iterations=400, checkpoint_every=1000))
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=90_000)
    with qtbot.waitSignal(finetune.runEnded, timeout=60_000) as ended:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    outcome = ended.args[0]
    assert outcome.status is RunStatus.CANCELLED and outcome.checkpoint.endswith(LAST_CHECKPOINT)
    assert os.path.isfile(outcome.checkpoint) and panel.resume_button.isEnabled()
    assert window.document.store.training_runs()[-1].status == RunStatus.CANCELLED

    # Resume, then close the project mid-run: the run is stopped with a checkpoint and offered on reopen.
    progress.clear()
    finetune.resume()
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=90_000)
    window.close_project()
    assert window.open_folder(images_folder, weights=str(tiny_checkpoint))
    assert window.finetune.can_resume() and window.training_panel.resume_button.isEnabled()
    assert window.document.store.training_runs()[-1].status == RunStatus.CANCELLED
    # Seen in the window: "The last run cancelled." to someone who had only closed the window.
    assert "the project closed" in window.training_panel.figures.text()
    window.close()
