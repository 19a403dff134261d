"""The fine-tune tiers: ``heads`` trains the RPN, box and mask heads on cached features of a frozen backbone
+ FPN; the cache in memory or in the run folder, reused when valid and rebuilt when not; resume, cancel and
the command line for the tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_model import TINY, TINY_CLI_FLAGS

from maskrcnn_core import load_model, mask_rcnn_mobilenet_v2_fpn
from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data import generate_synthetic_dataset, load_coco
from maskrcnn_core.data.dataset import InstanceDataset, collate_detection
from maskrcnn_core.engine import feature_cache
from maskrcnn_core.engine.feature_cache import (
    FEATURE_CACHE_DIR,
    MANIFEST,
    batch_features,
    compute_features,
)
from maskrcnn_core.engine.training import TrainConfig, train
from maskrcnn_core.model.weights import save_checkpoint
from maskrcnn_core.protocol import (
    FINAL_MODEL,
    LAST_CHECKPOINT,
    METRICS_LOG,
    CachingEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
    TrainingEvent,
    TrainRequest,
    parse_event,
)

NUM_IMAGES = 6
HEADS = dict(batch_size=2, lr=0.02, checkpoint_every=100, seed=4, tier="heads")


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tier_shapes")
    generate_synthetic_dataset(
        root,
        num_images=NUM_IMAGES,
        seed=3,
        image_size=(64, 80),
        class_names=("circle", "square"),
        category_ids=(7, 9),
    )
    return root


@pytest.fixture(scope="module")
def shapes(shapes_root: Path):
    data, report = load_coco(shapes_root / "train.json", shapes_root / "images")
    assert report.ok
    return data


def tiny_model(data, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mask_rcnn_mobilenet_v2_fpn(
        class_names=data.class_names, category_ids=tuple(c.id for c in data.categories), **TINY
    )


class Recorder:
    """The run's events; cancels ``token`` at the first event ``stop`` says yes to."""

    def __init__(self, token: CancelToken | None = None, stop=None) -> None:
        self.events: list[TrainingEvent] = []
        self.token, self.stop = token, stop

    def __call__(self, event: TrainingEvent) -> None:
        self.events.append(event)
        if self.stop is not None and self.stop(event):
            self.token.cancel()

    def losses(self) -> list[dict[str, float]]:
        return [e.losses for e in self.events if isinstance(e, ProgressEvent)]

    def caching(self) -> list[CachingEvent]:
        return [e for e in self.events if isinstance(e, CachingEvent)]


class CountingFeatures:
    """Counts the images whose features are computed (not reused)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.computed = 0
        original = feature_cache.compute_features

        def counting(model, images, subnetworks=None):
            self.computed += len(images)
            return original(model, images, subnetworks)

        monkeypatch.setattr(feature_cache, "compute_features", counting)


def test_heads_tier_trains_the_heads_alone_and_learns(shapes, tmp_path: Path) -> None:
    model = tiny_model(shapes)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    recorder = Recorder()
    result = train(model, shapes, tmp_path, TrainConfig(iterations=24, **HEADS), callbacks=[recorder])
    assert result.status is RunStatus.FINISHED

    start = recorder.events[0]
    assert isinstance(start, StartEvent) and start.tier == "heads"
    caching = recorder.caching()
    # every image and its mirror image once, before the first step, in memory
    assert caching[-1].done == caching[-1].total == 2 * NUM_IMAGES and not caching[-1].on_disk
    first_progress = next(i for i, e in enumerate(recorder.events) if isinstance(e, ProgressEvent))
    assert all(isinstance(e, CachingEvent) for e in recorder.events[1:first_progress])
    assert not (tmp_path / FEATURE_CACHE_DIR).exists()

    for k, v in load_model(result.model_path).backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k]), f"backbone/FPN weight {k} changed"
    final = load_model(result.model_path).state_dict()
    changed = [k for k, v in heads_before.items() if not torch.equal(final[k], v)]
    assert any(k.startswith("rpn.") for k in changed) and any(k.startswith("roi_heads.") for k in changed)

    total = [step["total_loss"] for step in recorder.losses()]
    assert sum(total[-6:]) / 6 < 0.85 * sum(total[:6]) / 6, total


def test_a_heads_run_scores_with_the_validation_features_computed_once(
    shapes_root: Path, shapes, tmp_path: Path, monkeypatch
) -> None:
    from maskrcnn_core.engine.training import Trainer
    from maskrcnn_core.engine.validation import evaluate_model

    val = load_coco(shapes_root / "train.json", shapes_root / "images")[0]  # 6 images: 3 batches of 2
    monkeypatch.setattr(Trainer, "_fast_backbone", lambda self: None)  # torch: the exact plain path
    config = TrainConfig(iterations=6, **HEADS, eval_every=2)
    recorder = Recorder()
    trainer = Trainer(tiny_model(shapes), shapes, tmp_path, config, val_data=val, callbacks=[recorder])
    trainer.train()
    evaluations = [e for e in recorder.events if str(e.type) == "evaluation"]
    assert [e.iteration for e in evaluations] == [2, 4, 6]
    assert trainer._scoring_networks is not None and trainer._scoring_networks.computed == 3  # not 9
    # the scores are the plain model's on the same images, to the last digit
    assert evaluations[-1].metrics == evaluate_model(trainer.model, val).to_dict()

    # no room in memory (the training features went to disk): computed each time, scored the same
    on_disk = TrainConfig(iterations=6, **HEADS, eval_every=2, feature_cache_bytes=0)
    again = Trainer(tiny_model(shapes), shapes, tmp_path / "disk", on_disk, val_data=val)
    again.train()
    assert again._scoring_networks is not None and again._scoring_networks.computed == 9
    assert again.last_metrics == evaluations[-1].metrics


def test_cached_features_give_the_loss_of_live_features(shapes) -> None:
    model = tiny_model(shapes).eval()  # the same BatchNorm behaviour on both paths
    dataset = InstanceDataset(shapes)
    images, targets = collate_detection([dataset[0], dataset[1]])
    assert images[0].shape == images[1].shape  # one size: the padded batch is the same both ways

    torch.manual_seed(11)
    live = model.get_loss(images, targets)

    cached = compute_features(model, images)
    assert all(level.dtype == torch.float16 for item in cached for level in item.levels.values())
    image_list, levels = batch_features(cached, torch.device("cpu"))
    resized = [
        model.transform.resize_target(t, (int(im.shape[-2]), int(im.shape[-1])))
        for t, im in zip(targets, images, strict=True)
    ]
    torch.manual_seed(11)  # the same anchor and proposal sampling
    from_cache = model.get_loss_from_features(image_list, levels, resized)
    for key, value in live.items():
        assert from_cache[key].item() == pytest.approx(value.item(), rel=2e-3, abs=1e-4), key


def test_resume_of_a_heads_run_equals_the_uninterrupted_run(shapes, tmp_path: Path, monkeypatch) -> None:
    config = TrainConfig(iterations=6, **{**HEADS, "checkpoint_every": 2})
    straight = Recorder()
    train(tiny_model(shapes), shapes, tmp_path / "straight", config, callbacks=[straight])

    # the interrupted run keeps its features in the run folder (a budget of 0 bytes): the resume reuses them
    on_disk = TrainConfig(iterations=6, **{**HEADS, "checkpoint_every": 2}, feature_cache_bytes=0)
    token = CancelToken()
    first = Recorder(token, stop=lambda e: isinstance(e, ProgressEvent) and e.iteration == 3)
    run = tmp_path / "interrupted"
    result = train(tiny_model(shapes), shapes, run, on_disk, cancel=token, callbacks=[first])
    assert result.status is RunStatus.CANCELLED and result.iteration == 3
    assert first.caching()[-1].on_disk and (run / FEATURE_CACHE_DIR / MANIFEST).is_file()

    counting = CountingFeatures(monkeypatch)
    second = Recorder()
    resumed = train(tiny_model(shapes, seed=99), shapes, run, on_disk, resume=True, callbacks=[second])
    assert resumed.status is RunStatus.FINISHED and resumed.iteration == 6
    assert counting.computed == 0, "the valid cache in the run folder was computed again"

    got = first.losses() + second.losses()
    assert len(got) == len(straight.losses()) == 6
    for step, (a, b) in enumerate(zip(got, straight.losses(), strict=True), start=1):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (step, key)


def test_past_the_memory_budget_the_features_go_to_the_run_folder(shapes, tmp_path: Path) -> None:
    in_memory = Recorder()
    train(
        tiny_model(shapes),
        shapes,
        tmp_path / "memory",
        TrainConfig(iterations=4, **HEADS),
        callbacks=[in_memory],
    )

    # room for about three items: the first ones are kept in memory, then everything moves to the folder
    one_item = compute_features(tiny_model(shapes), [InstanceDataset(shapes)[0][0]])[0].nbytes
    spilled = Recorder()
    config = TrainConfig(iterations=4, **HEADS, feature_cache_bytes=3 * one_item)
    result = train(tiny_model(shapes), shapes, tmp_path / "disk", config, callbacks=[spilled])
    assert result.status is RunStatus.FINISHED
    flags = [e.on_disk for e in spilled.caching()]
    assert flags[0] is False and flags[-1] is True  # the event says when the features moved
    folder = tmp_path / "disk" / FEATURE_CACHE_DIR
    manifest = json.loads((folder / MANIFEST).read_text())
    assert len(manifest["items"]) == 2 * NUM_IMAGES and len(list(folder.glob("*.pt"))) == 2 * NUM_IMAGES
    assert spilled.losses() == in_memory.losses()  # the same float16 values, wherever they are kept


def test_a_damaged_or_foreign_cache_is_rebuilt_not_trusted(shapes, tmp_path: Path, monkeypatch) -> None:
    config = TrainConfig(iterations=1, **HEADS, feature_cache_bytes=0)
    reference = Recorder()
    train(tiny_model(shapes), shapes, tmp_path / "reference", config, callbacks=[reference])
    run = tmp_path / "run"
    train(tiny_model(shapes), shapes, run, config)
    folder = run / FEATURE_CACHE_DIR
    files = sorted(folder.glob("*.pt"))

    counting = CountingFeatures(monkeypatch)
    damaged = files[3]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a truncated file
    files[5].write_bytes(os.urandom(files[5].stat().st_size))  # the right size, garbage inside
    (folder / files[7].name).unlink()  # a missing one
    rerun = Recorder()
    train(tiny_model(shapes), shapes, run, config, callbacks=[rerun])
    assert counting.computed == 3  # those three only; the intact ones are reused
    assert rerun.losses() == reference.losses()

    # another model (other backbone weights): nothing of the folder is used
    counting.computed = 0
    train(tiny_model(shapes, seed=1), shapes, run, config)
    assert counting.computed == 2 * NUM_IMAGES

    # an unreadable manifest: rebuilt too
    counting.computed = 0
    (folder / MANIFEST).write_text("{not json")
    train(tiny_model(shapes, seed=1), shapes, run, config)
    assert counting.computed == 2 * NUM_IMAGES
    assert json.loads((folder / MANIFEST).read_text())["items"]


def test_cancel_during_caching_leaves_the_parent_model_and_data_untouched(
    shapes_root: Path, shapes, tmp_path: Path
) -> None:
    parent = save_checkpoint(tmp_path / "parent.pt", tiny_model(shapes), metadata={"name": "parent"})
    parent_bytes = parent.read_bytes()
    data_bytes = (shapes_root / "train.json").read_bytes()
    out = tmp_path / "run"
    request = TrainRequest(
        train_json=str(shapes_root / "train.json"),
        images=str(shapes_root / "images"),
        out=str(out),
        iterations=3,
        weights=str(parent),
        tier="heads",
        checkpoint_every=100,
    )
    token = CancelToken()
    recorder = Recorder(token, stop=lambda e: isinstance(e, CachingEvent) and e.done == 4)
    result = _run_on_disk(request, shapes, recorder, token)
    assert result.status is RunStatus.CANCELLED and result.iteration == 0
    assert str(recorder.events[-1].type) == "cancelled"
    assert not any(isinstance(e, ProgressEvent) for e in recorder.events)
    assert not (out / FINAL_MODEL).exists() and (out / LAST_CHECKPOINT).is_file()
    assert parent.read_bytes() == parent_bytes and (shapes_root / "train.json").read_bytes() == data_bytes
    kept = json.loads((out / FEATURE_CACHE_DIR / MANIFEST).read_text())["items"]
    assert 0 < len(kept) < 2 * NUM_IMAGES  # the partial cache stays in the run folder for a resume

    resumed = _run_on_disk(request.resumed(), shapes, Recorder(), None)
    assert resumed.status is RunStatus.FINISHED and (out / FINAL_MODEL).is_file()
    assert parent.read_bytes() == parent_bytes


def _run_on_disk(request: TrainRequest, data, recorder: Recorder, token: CancelToken | None):
    """``run_request`` with the features kept in the run folder (``--feature-cache-memory-mb 0``)."""
    from maskrcnn_core.engine.training_model import run_request

    return run_request(replace(request, feature_cache_memory_mb=0), data, callbacks=[recorder], cancel=token)


def test_a_memory_budget_of_0_mb_keeps_the_features_in_the_run_folder_and_trains(
    shapes_root: Path, shapes, tmp_path: Path
) -> None:
    from maskrcnn_core.engine.training_model import run_request

    request = TrainRequest(
        train_json=str(shapes_root / "train.json"),
        images=str(shapes_root / "images"),
        out=str(tmp_path / "run"),
        iterations=3,
        backbone="mobilenet_v2",
        pretrained_backbone=False,
        min_size=64,
        max_size=96,
        tier="heads",
        feature_cache_memory_mb=0,
    )
    assert TrainConfig.from_request(request).feature_cache_bytes == 0
    recorder = Recorder()
    result = run_request(request, shapes, callbacks=[recorder])
    assert result.status is RunStatus.FINISHED and (tmp_path / "run" / FINAL_MODEL).is_file()
    assert all(e.on_disk for e in recorder.caching()) and len(recorder.losses()) == 3
    folder = tmp_path / "run" / FEATURE_CACHE_DIR
    assert len(json.loads((folder / MANIFEST).read_text())["items"]) == 2 * NUM_IMAGES
    assert len(list(folder.glob("*.pt"))) == 2 * NUM_IMAGES
    # a budget in MiB becomes the trainer's budget in bytes
    assert TrainConfig.from_request(replace(request, feature_cache_memory_mb=1.5)).feature_cache_bytes == (
        3 << 19
    )


def test_auto_says_in_one_line_what_the_heads_tier_it_chose_does_not_apply(
    shapes, tmp_path: Path, caplog
) -> None:
    with pytest.raises(ValueError, match="the heads tier does not apply --trainable-backbone-layers 2"):
        TrainConfig(iterations=1, **{**HEADS, "tier": "heads"}, trainable_backbone_layers=2)

    model = tiny_model(shapes)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    config = TrainConfig(
        iterations=2, **{**HEADS, "tier": "auto"}, trainable_backbone_layers=2, scale_jitter=(0.5, 1.5)
    )
    recorder = Recorder()
    with caplog.at_level("WARNING", logger="maskrcnn_core.engine.training"):
        result = train(model, shapes, tmp_path, config, callbacks=[recorder])
    assert result.status is RunStatus.FINISHED
    start = recorder.events[0]
    assert isinstance(start, StartEvent) and start.tier == "heads"
    assert "auto chose the heads tier (training on a CPU)" in start.notice and "\n" not in start.notice
    assert "--trainable-backbone-layers 2" in start.notice and "scale jitter 0.5-1.5" in start.notice
    assert parse_event(start.to_json()) == start  # the app reads it from the JSON line
    assert [r.getMessage() for r in caplog.records] == [start.notice]
    for k, v in model.backbone.state_dict().items():  # ignored indeed: the backbone stayed frozen
        assert torch.equal(v, backbone_before[k]), k

    # nothing asked that heads ignores: no notice
    plain = Recorder()
    config = TrainConfig(iterations=1, **HEADS)
    train(tiny_model(shapes), shapes, tmp_path / "plain", config, callbacks=[plain])
    assert plain.events[0].notice == ""


@pytest.mark.slow
def test_the_train_command_runs_the_heads_tier_with_json_lines(shapes_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "maskrcnn_core",
        "train",
        "--train-json",
        str(shapes_root / "train.json"),
        "--images",
        str(shapes_root / "images"),
        "--out",
        str(out),
        *TINY_CLI_FLAGS,
        "--device",
        "cpu",
        "--num-threads",
        "1",
        "--progress",
        "jsonl",
        "--iterations",
        "3",
        "--tier",
        "heads",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [parse_event(line) for line in done.stdout.splitlines()]
    kinds = [str(e.type) for e in events]
    assert kinds == ["start"] + ["caching"] * NUM_IMAGES + ["progress"] * 3 + ["checkpoint", "finished"]
    assert events[0].tier == "heads" and events[0].config["tier"] == "heads"
    assert events[NUM_IMAGES].done == events[NUM_IMAGES].total == 2 * NUM_IMAGES
    logged = [parse_event(line) for line in (out / METRICS_LOG).read_text().splitlines()]
    assert [str(e.type) for e in logged] == kinds
    meta = load_model(out / FINAL_MODEL).checkpoint_metadata
    assert meta["training"]["tier"] == "heads"

    # a resume keeps the tier the run started with
    other_tier = [*command[: command.index("--tier")], "--tier", "full", "--resume"]
    refused = subprocess.run(other_tier, capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 1 and "resume it with --tier heads" in refused.stderr, refused.stderr[-2000:]

    # the default tier, auto, is heads on a CPU: it says in one line (the start event's notice, and the log)
    # that it does not apply the trainable backbone stages asked for; a budget of 0 MB keeps the features
    # in the run folder
    default = [*command[: command.index("--out") + 1], str(tmp_path / "auto")]
    default += command[command.index("--out") + 2 : command.index("--iterations")] + ["--iterations", "1"]
    default += ["--trainable-backbone-layers", "2", "--feature-cache-memory-mb", "0"]
    auto = subprocess.run(default, capture_output=True, text=True, timeout=300, env=env)
    assert auto.returncode == 0, auto.stderr[-2000:]
    start = parse_event(auto.stdout.splitlines()[0])
    assert start.tier == "heads" and "does not apply --trainable-backbone-layers 2" in start.notice
    assert f"warning: {start.notice}" in auto.stderr.splitlines()
    assert len(list((tmp_path / "auto" / FEATURE_CACHE_DIR).glob("*.pt"))) == 2 * NUM_IMAGES
    assert (tmp_path / "auto" / FINAL_MODEL).is_file()


def test_the_rpn_loss_at_the_sampled_anchors_equals_torchvisions_dense_loss(shapes) -> None:
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    from maskrcnn_core.model.rpn_loss import sampled_rpn_loss, supports_sampled_loss

    model = tiny_model(shapes)
    rpn = model.rpn
    assert supports_sampled_loss(rpn.head)
    dataset = InstanceDataset(shapes)
    images, targets = collate_detection([dataset[0], dataset[3]])
    image_list, targets = model.transform(images, targets)
    features = [f.detach().requires_grad_(True) for f in model._features(image_list.tensors).values()]
    anchors = rpn.anchor_generator(image_list, features)
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    regression_targets = rpn.box_coder.encode(matched, anchors)
    leaves = [*rpn.head.parameters(), *features]

    def gradients(losses) -> list[torch.Tensor]:
        grads = torch.autograd.grad(sum(losses), leaves)
        return [g.clone() for g in grads]

    torch.manual_seed(5)  # the same anchors sampled both ways
    objectness, deltas = concat_box_prediction_layers(*rpn.head(features))
    dense = rpn.compute_loss(objectness, deltas, labels, regression_targets)
    dense_grads = gradients(dense)
    torch.manual_seed(5)
    sparse = sampled_rpn_loss(rpn, features, labels, regression_targets)
    sparse_grads = gradients(sparse)

    assert dense[1].item() > 0, "no positive anchor: the box loss would prove nothing"
    for a, b in zip(dense, sparse, strict=True):
        assert b.item() == pytest.approx(a.item(), rel=1e-5, abs=1e-7)
    for a, b in zip(dense_grads, sparse_grads, strict=True):  # the head's weights and the features
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
