"""What a menu fine-tune asks the engine for: the TrainRequest built from the dialog's settings, its
learning rate, that the engine's own command-line parser reads it back unchanged, and that the request
kept in a real project's run record resumes an interrupted run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from app.project.records import ModelVersionRecord
from app.project.store import ProjectStore
from app.project.training_set import TrainingSet
from app.session.document import Document
from app.session.finetune import FinetuneController, FinetuneSettings, finetune_learning_rate, train_request
from app.session.model_registry import ModelRegistry
from maskrcnn_core.cli import _parser
from maskrcnn_core.protocol import (
    LAST_CHECKPOINT,
    EvaluateRequest,
    RunStatus,
    TrainRequest,
    default_lr,
    engine_argv,
    iterations_for_epochs,
)

BASE = ModelVersionRecord(1, "demo", "mobilenet_v2_fpn", "/models/demo.pt", None, ((1, "circle"),), "", None)


def _training_set(tmp_path: Path, num_train: int = 7) -> TrainingSet:
    return TrainingSet(
        train_json=tmp_path / "train.json",
        val_json=tmp_path / "val.json",
        images_dir=tmp_path / "images",
        train_images=tuple(f"t{i}.png" for i in range(num_train)),
        val_images=("v0.png", "v1.png"),
        categories=((1, "circle"),),
        num_annotations=12,
    )


def _request(tmp_path: Path, settings: FinetuneSettings) -> TrainRequest:
    training_set = _training_set(tmp_path)
    total = settings.total_iterations(len(training_set.train_images))
    return train_request(settings, training_set, BASE, tmp_path / "run", "demo-ft1", total)


def test_the_learning_rate_of_a_menu_fine_tune_is_the_engines_default_for_the_batch() -> None:
    assert finetune_learning_rate(2) == default_lr(2)
    assert finetune_learning_rate(8) == default_lr(8)
    assert finetune_learning_rate(8, 0.003) == 0.003


def test_one_click_settings_become_a_request_the_engine_parses_back(tmp_path: Path) -> None:
    settings = FinetuneSettings(base_version_id=1)
    request = _request(tmp_path, settings)
    total = iterations_for_epochs(settings.epochs, 7, settings.batch_size)
    assert settings.total_iterations(7) == total == request.total_iterations(7)
    assert (
        request.weights == BASE.path and request.out == str(tmp_path / "run") and request.name == "demo-ft1"
    )
    assert request.val_json == str(tmp_path / "val.json") and request.progress == "jsonl"
    assert request.lr == default_lr(settings.batch_size)  # written out, so the run record says it
    assert request.eval_every == max(1, total // 4) and request.checkpoint_every == max(1, total // 10)
    argv = engine_argv(request.to_argv(), nice=10)
    assert TrainRequest.from_args(_parser().parse_args(argv[2:])) == request


def test_explicit_settings_and_further_options_reach_the_request(tmp_path: Path) -> None:
    settings = FinetuneSettings(
        base_version_id=1,
        iterations=24,
        lr=0.001,
        batch_size=4,
        trainable_backbone_layers=0,
        device="cpu",
        num_threads=1,
        eval_every=0,
        checkpoint_every=2,
        request_options=(("min_size", 128), ("seed", 3)),
    )
    request = _request(tmp_path, settings)
    assert (request.iterations, request.epochs, request.lr, request.batch_size) == (24, None, 0.001, 4)
    assert request.eval_every is None  # 0: validate at the end only
    assert (request.checkpoint_every, request.min_size, request.seed) == (2, 128, 3)
    assert request.trainable_backbone_layers == 0 and request.device == "cpu" and request.num_threads == 1
    assert request.resumed().resume and not request.resume


def test_an_unknown_option_is_a_clear_error(tmp_path: Path) -> None:
    settings = FinetuneSettings(base_version_id=1, request_options=(("colour", "red"),))
    with pytest.raises(ValueError, match="fine-tune options: .*colour"):
        _request(tmp_path, settings)


# ------------------------------------------------------------------ the request kept in the run record


def _record_interrupted_run(tmp_path: Path, request_record: dict) -> None:
    """A project whose last run was cut off (still ``running``), with a checkpoint in its run folder."""
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / LAST_CHECKPOINT).write_bytes(b"stands for the run's last checkpoint")
    evaluate = EvaluateRequest(gt="g.json", weights="/models/demo.pt", images=str(tmp_path))
    with ProjectStore.open(tmp_path) as store:
        registry = ModelRegistry(store)
        base = registry.register(
            name="demo",
            arch="mobilenet_v2_fpn",
            path="/models/demo.pt",
            sha256=None,
            categories=[(1, "circle")],
        )
        config = {
            "name": "demo-ft1",
            "run_dir": str(run_dir),
            "request": request_record,
            "evaluate_request": asdict(evaluate),
            "val_json": "v.json",
            "num_val_images": 2,
            "num_train_images": 7,
            "categories": [[1, "circle"]],
            "iterations": 24,
        }
        registry.start_run(base_version_id=base, config=config)


def _reopened(tmp_path: Path) -> FinetuneController:
    store = ProjectStore.open(tmp_path)
    document = Document(store)
    controller = FinetuneController(document, ModelRegistry(store), document)
    return controller


@pytest.mark.gui
def test_an_interrupted_run_is_offered_for_resume_with_its_request(qtbot, tmp_path: Path) -> None:
    settings = FinetuneSettings(base_version_id=1, iterations=24)
    request = _request(tmp_path, settings)
    _record_interrupted_run(tmp_path, request.to_dict())
    controller = _reopened(tmp_path)
    try:
        assert controller.can_resume() and controller.run is not None
        assert controller.run.request == request
    finally:
        controller.store.close()


@pytest.mark.gui
def test_a_run_record_with_an_unreadable_request_is_not_offered_and_breaks_nothing(qtbot, tmp_path: Path):
    _record_interrupted_run(tmp_path, {"train_json": "t.json", "colour": "red"})
    controller = _reopened(tmp_path)
    try:
        assert not controller.can_resume() and controller.run is None
        assert controller.registry.runs()[-1].status is RunStatus.FAILED  # the cut-off run, as before
    finally:
        controller.store.close()
