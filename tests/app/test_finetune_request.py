"""What a menu fine-tune asks the engine for: the TrainRequest built from the dialog's settings, its
learning rate, and that the engine's own command-line parser reads it back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.project.records import ModelVersionRecord
from app.project.training_set import TrainingSet
from app.session.finetune import FinetuneSettings, finetune_learning_rate, train_request
from maskrcnn_core.cli import _parser
from maskrcnn_core.protocol import TrainRequest, default_lr, engine_argv, iterations_for_epochs

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
