"""The training loop: exact resume, checkpoints, cancellation, bad input, and the learning rate recipe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from tiny_model import TINY

from maskrcnn_core import load_model, mask_rcnn_mobilenet_v2_fpn
from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data import generate_synthetic_dataset, load_coco
from maskrcnn_core.engine.training import HookBase, TrainConfig, Trainer, TrainingError, _lr_factor, train
from maskrcnn_core.protocol import (
    FINAL_MODEL,
    LAST_CHECKPOINT,
    METRICS_LOG,
    EvaluationEvent,
    EventType,
    ProgressEvent,
    RunStatus,
    TrainingEvent,
    parse_event,
)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shapes")
    json_path = generate_synthetic_dataset(
        root, num_images=6, seed=3, image_size=(64, 80), class_names=("circle", "square"), category_ids=(7, 9)
    )
    data, report = load_coco(json_path, root / "images")
    assert report.ok
    return data


def tiny_model(data) -> torch.nn.Module:
    torch.manual_seed(0)
    return mask_rcnn_mobilenet_v2_fpn(
        class_names=data.class_names, category_ids=tuple(c.id for c in data.categories), **TINY
    )


def losses_of(run: Path) -> list[dict]:
    events = [parse_event(line) for line in (run / METRICS_LOG).read_text().splitlines()]
    return [e.losses for e in events if isinstance(e, ProgressEvent)]


class Recorder:
    def __init__(self, stop_at: int | None = None, token: CancelToken | None = None) -> None:
        self.events: list[TrainingEvent] = []
        self.stop_at, self.token = stop_at, token

    def __call__(self, event: TrainingEvent) -> None:
        self.events.append(event)
        if self.stop_at and isinstance(event, ProgressEvent) and event.iteration == self.stop_at:
            self.token.cancel()


def metrics_file(run: Path):
    run.mkdir(parents=True, exist_ok=True)

    def write(event: TrainingEvent) -> None:
        with (run / METRICS_LOG).open("a") as f:
            f.write(event.to_json() + "\n")

    return write


def test_resume_reproduces_the_uninterrupted_loss_curve(shapes, tmp_path: Path) -> None:
    config = TrainConfig(iterations=6, batch_size=2, lr=0.01, checkpoint_every=2, seed=5)

    straight = tmp_path / "straight"
    result = train(tiny_model(shapes), shapes, straight, config, callbacks=[metrics_file(straight)])
    assert result.status is RunStatus.FINISHED and result.iteration == 6
    expected = losses_of(straight)
    assert len(expected) == 6

    interrupted = tmp_path / "interrupted"
    token = CancelToken()
    first = train(
        tiny_model(shapes),
        shapes,
        interrupted,
        config,
        cancel=token,
        callbacks=[metrics_file(interrupted), Recorder(stop_at=3, token=token)],
    )
    assert first.status is RunStatus.CANCELLED and first.iteration == 3
    assert (interrupted / LAST_CHECKPOINT).is_file() and not (interrupted / FINAL_MODEL).exists()

    # a fresh model object, as a new process would build; its own random init is overwritten by the resume
    torch.manual_seed(999)
    resumed = train(
        tiny_model(shapes), shapes, interrupted, config, resume=True, callbacks=[metrics_file(interrupted)]
    )
    assert resumed.status is RunStatus.FINISHED and resumed.iteration == 6
    got = losses_of(interrupted)
    assert len(got) == 6
    for step, (a, b) in enumerate(zip(got, expected, strict=False), start=1):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (step, key)

    final_a, final_b = load_model(straight / FINAL_MODEL), load_model(interrupted / FINAL_MODEL)
    for key, value in final_a.state_dict().items():
        torch.testing.assert_close(final_b.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_final_model_describes_itself(shapes, tmp_path: Path) -> None:
    recorder = Recorder()
    result = train(
        tiny_model(shapes),
        shapes,
        tmp_path,
        TrainConfig(iterations=2, checkpoint_every=10),
        callbacks=[recorder],
        metadata={"name": "tiny"},
        val_data=shapes,
    )
    model = load_model(result.model_path)
    assert model.config.category_ids == (7, 9) and model.config.class_names == ("circle", "square")
    meta = model.checkpoint_metadata
    assert meta["name"] == "tiny" and meta["iteration"] == 2 and meta["training"]["num_train_images"] == 6
    assert set(meta["final_losses"]) >= {"total_loss", "mask_loss"}
    kinds = [e.type for e in recorder.events]
    assert kinds[0] is EventType.START and kinds[-1] is EventType.FINISHED and EventType.EVALUATION in kinds
    progress = [e for e in recorder.events if isinstance(e, ProgressEvent)]
    assert [e.iteration for e in progress] == [1, 2] and progress[0].iterations == 2
    assert progress[0].lr > 0 and progress[0].images_per_s > 0 and progress[0].epoch == pytest.approx(2 / 6)
    evaluation = next(e for e in recorder.events if isinstance(e, EvaluationEvent))
    assert 0.0 <= evaluation.metrics["segm"]["ap"] <= 1.0
    assert recorder.events[-1].validation == evaluation.metrics  # the final validation is the one reported


def test_learning_rate_warms_up_then_steps_down() -> None:
    factors = [_lr_factor(i, warmup=10, warmup_factor=0.001, steps=[70, 90], gamma=0.1) for i in range(100)]
    assert factors[0] == pytest.approx(0.001)
    assert factors[5] == pytest.approx(0.001 * 0.5 + 0.5)
    assert factors[10:70] == [1.0] * 60
    assert factors[70] == pytest.approx(0.1) and factors[99] == pytest.approx(0.01)


def test_interrupted_checkpoint_write_keeps_the_previous_one(shapes, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    train(tiny_model(shapes), shapes, run, TrainConfig(iterations=2, checkpoint_every=1))
    before = (run / LAST_CHECKPOINT).read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        train(tiny_model(shapes), shapes, tmp_path / "run", TrainConfig(iterations=2, checkpoint_every=1))
    assert (run / LAST_CHECKPOINT).read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_bad_training_input(shapes, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="iterations or epochs"):
        TrainConfig()
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(iterations=1, batch_size=0)
    wrong = mask_rcnn_mobilenet_v2_fpn(num_classes=3, **TINY)
    with pytest.raises(ValueError, match="3 classes but the training data 2"):
        train(wrong, shapes, tmp_path, TrainConfig(iterations=1))
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny_model(shapes), shapes, tmp_path / "empty", TrainConfig(iterations=1), resume=True)
    with pytest.raises(TrainingError, match="became nan|became inf"):
        train(tiny_model(shapes), shapes, tmp_path / "diverge", TrainConfig(iterations=5, lr=1e12))


def test_checkpoints_get_ordinary_file_permissions(shapes, tmp_path: Path) -> None:
    """Atomic writes go through a private temp file; the result must still be readable by others."""
    previous = os.umask(0o022)
    try:
        result = train(tiny_model(shapes), shapes, tmp_path, TrainConfig(iterations=1, checkpoint_every=10))
    finally:
        os.umask(previous)
    for path in (result.model_path, result.checkpoint_path):
        assert path.stat().st_mode & 0o777 == 0o644, oct(path.stat().st_mode)


class StepLog(HookBase):
    """A hook of a caller's own: what the trainer's state is at each moment it is called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.losses: list[dict[str, float]] = []

    def before_train(self, trainer: Trainer) -> None:
        self.calls.append(("before", trainer.iteration))

    def after_step(self, trainer: Trainer) -> None:
        self.calls.append(("step", trainer.iteration))
        self.losses.append(dict(trainer.last_losses))

    def after_train(self, trainer: Trainer) -> None:
        self.calls.append(("after", trainer.iteration))


def test_a_hook_of_ones_own_sees_every_step_and_the_end(shapes, tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = Trainer(
        tiny_model(shapes),
        shapes,
        tmp_path,
        TrainConfig(iterations=3, checkpoint_every=2),
        callbacks=[recorder],
    )
    log = StepLog()
    trainer.hooks.append(log)
    result = trainer.train()
    assert log.calls == [("before", 0), ("step", 1), ("step", 2), ("step", 3), ("after", 3)]
    progress = [e for e in recorder.events if isinstance(e, ProgressEvent)]
    assert [e.losses for e in progress] == log.losses  # the hook sees what the progress events report
    assert result.status is RunStatus.FINISHED and result.last_losses == log.losses[-1]
    # the built-in checkpoint hook: at iteration 2 and at the end
    assert [e.iteration for e in recorder.events if e.type is EventType.CHECKPOINT] == [2, 3]
