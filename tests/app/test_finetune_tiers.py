"""Fine-tune tiers and "protect what the model knew", without a window: the dialog's tier and its automatic
text, the request the engine parses back, the comparison's known / new classes and its 0.02 rule, and the
timing a run's events measure (the only source of an estimate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.project.comparison import (
    KNOWN_CLASSES,
    KNOWN_CLASSES_MAX_AP_LOSS,
    NEW_CLASSES,
    compare,
)
from app.project.records import ImageStatus, ModelVersionRecord
from app.project.run_timing import RunTimer, RunTiming, estimate_run_time
from app.project.training_set import TrainingSet
from app.session.finetune import TIER_NAMES, train_request
from app.ui.finetune_dialog import FinetuneDialog
from maskrcnn_core.cli import _parser
from maskrcnn_core.protocol import (
    HEADS_TIER_MAX_IMAGES,
    CachingEvent,
    ProgressEvent,
    StartEvent,
    TrainRequest,
    engine_argv,
    resolve_tier,
)

BASE = ModelVersionRecord(1, "demo", "mobilenet_v2_fpn", "/m/demo.pt", None, ((1, "circle"),), "", None)


def _images(count: int) -> dict[ImageStatus, list[str]]:
    return {ImageStatus.VERIFIED: [f"v{i}.png" for i in range(count)]}


def _dialog(qtbot, count: int = 20, **kwargs) -> FinetuneDialog:  # noqa: ANN003 - FinetuneDialog's
    dialog = FinetuneDialog([BASE], 1, _images(count), **kwargs)
    qtbot.addWidget(dialog)
    return dialog


# ------------------------------------------------------------------------------------------- the dialog
@pytest.mark.gui
@pytest.mark.parametrize("gpu_available", [False, True])
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
@pytest.mark.parametrize("count", [20, 2 * HEADS_TIER_MAX_IMAGES])
def test_the_automatic_tiers_text_is_what_resolve_tier_picks_here(qtbot, gpu_available, device, count):
    dialog = _dialog(qtbot, count, gpu_available=gpu_available)
    dialog.device.setCurrentText(device)
    on_gpu = device == "cuda" or (device == "auto" and gpu_available)
    num_train = len(dialog.split()[0])
    picked = resolve_tier("auto", on_gpu=on_gpu, num_train_images=num_train)
    text = dialog.tier.itemText(dialog.tier.findData("auto"))
    assert text.startswith(f"Automatic: {TIER_NAMES[picked]} ")
    assert ("on this CPU" in text) == (not on_gpu)
    assert (str(num_train) in text) == on_gpu  # on a GPU the image count decides


@pytest.mark.gui
def test_the_tier_chosen_reaches_the_argv_the_engine_parses(qtbot, tmp_path: Path):
    dialog = _dialog(qtbot, tier="heads")
    assert dialog.tier.currentData() == "heads"  # the project's last choice is offered again
    for tier in ("full", "heads", "auto"):
        dialog.tier.setCurrentIndex(dialog.tier.findData(tier))
        settings = dialog.settings()
        assert settings.tier == tier
        train, val = dialog.split()
        training_set = TrainingSet(
            tmp_path / "train.json", tmp_path / "val.json", tmp_path, tuple(train), tuple(val), ((1, "c"),), 3
        )
        request = train_request(settings, training_set, BASE, tmp_path / "run", "demo-ft1", 10)
        argv = engine_argv(request.to_argv())
        assert ("--tier" in argv) == (tier != TrainRequest.tier)  # the default is not written out
        assert TrainRequest.from_args(_parser().parse_args(argv[2:])).tier == tier


@pytest.mark.gui
def test_no_estimate_without_a_measured_run(qtbot):
    dialog = _dialog(qtbot)
    assert dialog.estimate_label.text() == "no estimate yet"
    dialog = _dialog(qtbot, estimate=lambda settings, n: None)
    assert dialog.estimate_label.text().startswith(
        "no estimate yet: no heads only run was measured on this CPU"
    )
    dialog.tier.setCurrentIndex(dialog.tier.findData("full"))
    assert "no full run was measured" in dialog.estimate_label.text()


# ----------------------------------------------------------------------------------------- the comparison
def _segm(overall: float, per_class: dict[str, float]) -> dict:
    entries = [{"category_id": i, "name": n, "ap": ap} for i, (n, ap) in enumerate(per_class.items(), 1)]
    return {"segm": {"ap": overall, "per_class_ap": entries}, "num_images": 4}


def test_known_and_new_classes_are_scored_apart():
    base = _segm(0.3, {"circle": 0.6, "ring": 0.5, "hexagon": 0.0})
    new = _segm(0.55, {"circle": 0.58, "ring": 0.5, "hexagon": 0.57})
    comparison = compare("demo", base, "ft", new, base_classes=["circle", "ring", "square"])
    assert comparison.known_classes == ("circle", "ring") and comparison.new_classes == ("hexagon",)
    assert [r.name for r in comparison.rows[:3]] == ["all classes", KNOWN_CLASSES, NEW_CLASSES]
    known, new_row = comparison.row(KNOWN_CLASSES), comparison.row(NEW_CLASSES)
    assert known.base_ap == pytest.approx(0.55) and known.new_ap == pytest.approx(0.54)
    assert new_row.base_ap is None and new_row.new_ap == pytest.approx(0.57)
    assert comparison.known_classes_loss == pytest.approx(0.01)
    assert comparison.activates and "becomes the active model" in comparison.verdict


def test_losing_more_than_the_limit_on_known_classes_is_not_activated():
    limit = KNOWN_CLASSES_MAX_AP_LOSS
    base = _segm(0.3, {"circle": 0.62, "hexagon": 0.0})
    at_limit = compare(
        "demo", base, "ft", _segm(0.5, {"circle": 0.62 - limit, "hexagon": 0.9}), base_classes=["circle"]
    )
    assert at_limit.known_classes_loss == pytest.approx(limit) and at_limit.activates
    beyond = compare("demo", base, "ft", _segm(0.5, {"circle": 0.5, "hexagon": 0.9}), base_classes=["circle"])
    assert beyond.new_is_better and beyond.forgets_known_classes and not beyond.activates
    assert f"loses {0.62 - 0.5:.3f} mask AP on the classes demo knew" in beyond.verdict
    assert f"more than {limit:g}" in beyond.verdict and "demo stays active" in beyond.verdict


def test_for_coco_weights_the_known_classes_are_the_coco_classes_the_images_show():
    coco = ["person", "bicycle", "car", "dog", "cat"]  # a COCO class map, by name
    base = _segm(0.2, {"person": 0.4, "hexagon": 0.0})
    new = _segm(0.45, {"person": 0.41, "hexagon": 0.5})
    comparison = compare("coco", base, "ft", new, base_classes=coco)
    assert comparison.known_classes == ("person",) and comparison.new_classes == ("hexagon",)
    assert comparison.activates


def test_without_the_base_classes_the_table_is_as_before():
    comparison = compare("demo", _segm(0.3, {"circle": 0.3}), "ft", _segm(0.4, {"circle": 0.4}))
    assert [r.name for r in comparison.rows] == ["all classes", "circle"]
    assert comparison.known_classes_loss is None and comparison.activates


# --------------------------------------------------------------------------------------------- timing
def _progress(iteration: int, elapsed: float) -> ProgressEvent:
    return ProgressEvent(iteration, 10, iteration / 4, {"total_loss": 1.0}, 0.0025, 2.0, 5.0, elapsed)


def test_a_runs_events_measure_its_step_and_caching_time_and_a_resume_adds_its_own_steps():
    timer = RunTimer(run_name="ft1", on_gpu=False, batch_size=2, train_images=8)
    assert timer.timing() is None
    timer.add(StartEvent(0, 10, 2, 0.0025, 1, 8, tier="heads"))
    for done in (1, 2, 16):
        timer.add(CachingEvent(done, 16, done * 0.5))
    timer.add(_progress(1, 9.0))  # the first step (warm-up) starts the clock
    assert timer.timing() is None
    for i in (2, 3, 4):
        timer.add(_progress(i, 9.0 + 2.0 * (i - 1)))
    timer.add(StartEvent(4, 10, 2, 0.0025, 1, 8, tier="heads"))  # resumed: its clock starts again
    timer.add(_progress(5, 1.0))
    timer.add(_progress(6, 4.0))
    timing = timer.timing()
    assert timing == RunTiming("ft1", "heads", False, 2, 8, (6.0 + 3.0) / 4, 8.0)
    assert RunTiming.from_dict(timing.to_dict()) == timing
    assert RunTiming.from_dict({"tier": "heads"}) is None and RunTiming.from_dict(None) is None


def test_an_estimate_comes_only_from_a_run_of_the_same_tier_and_device():
    measured = [
        RunTiming("a", "heads", False, 2, 40, 2.0, 20.0),
        RunTiming("b", "heads", False, 2, 10, 3.0, 4.0),
        RunTiming("c", "full", True, 4, 10, 1.0),
    ]
    assert (
        estimate_run_time(measured, tier="full", on_gpu=False, train_images=10, iterations=5, batch_size=2)
        is None
    )
    estimate = estimate_run_time(
        measured, tier="heads", on_gpu=False, train_images=12, iterations=5, batch_size=4
    )
    assert estimate is not None and estimate.source.run_name == "b"  # the closest image count
    assert estimate.training_s == pytest.approx(3.0 * 4 / 2 * 5)  # a step's time scales with its images
    assert estimate.caching_s == pytest.approx(4.0 * 12 / 10)
    gpu = estimate_run_time(measured, tier="full", on_gpu=True, train_images=10, iterations=5, batch_size=4)
    assert gpu is not None and gpu.caching_s == 0 and gpu.total_s == pytest.approx(5.0)
