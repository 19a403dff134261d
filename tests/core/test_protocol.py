"""The contract between the engine's processes and the app: events and their JSON lines, the train
request and the real command-line parser, the learning-rate and iterations rules, and no torch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import fields

import pytest

from maskrcnn_core.cli import _parser
from maskrcnn_core.protocol import (
    BACKBONES,
    HEADS_TIER_MAX_IMAGES,
    CachingEvent,
    CancelledEvent,
    CheckpointEvent,
    ErrorEvent,
    EvaluateRequest,
    EvaluationEvent,
    EventType,
    FinishedEvent,
    ProgressEvent,
    ProtocolError,
    RunStatus,
    StartEvent,
    TrainRequest,
    default_lr,
    engine_argv,
    heads_tier_ignores,
    iterations_for_epochs,
    parse_event,
    resolve_tier,
)

EVENTS = [
    StartEvent(
        start_iteration=3,
        iterations=40,
        global_batch=4,
        base_lr=0.005,
        world_size=2,
        num_train_images=17,
        config={"lr_steps": [0.7, 0.9], "seed": 1},
        tier="heads",
    ),
    CachingEvent(done=3, total=34, elapsed_s=2.5, on_disk=True),
    ProgressEvent(
        iteration=4,
        iterations=40,
        epoch=0.94,
        losses={"total_loss": 2.5, "mask_loss": 0.7},
        lr=0.004,
        images_per_s=3.5,
        eta_s=None,
        elapsed_s=1.25,
    ),
    EvaluationEvent(iteration=10, metrics={"segm": {"ap": 0.25, "per_class_ap": []}}),
    CheckpointEvent(iteration=10, path="/runs/a/checkpoint_last.pt"),
    FinishedEvent(iteration=40, model="/runs/a/model_final.pt", losses={"total_loss": 1.0}, validation=None),
    CancelledEvent(iteration=12, checkpoint="/runs/a/checkpoint_last.pt"),
    ErrorEvent(message="CUDA out of memory with 8 images per step"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: str(e.type))
def test_every_event_is_one_json_line_that_parses_back_to_itself(event) -> None:
    line = event.to_json()
    assert "\n" not in line
    assert json.loads(line)["event"] == str(event.type)
    assert parse_event(line) == event
    assert parse_event(line.encode() + b"\n") == event  # as bytes off a pipe, with its newline


def test_every_event_type_has_its_event() -> None:
    assert {e.type for e in EVENTS} == set(EventType)


def test_a_good_run_ends_with_the_one_word_finished() -> None:
    assert EventType.FINISHED == RunStatus.FINISHED == "finished"
    assert "done" not in {str(t) for t in EventType} | {str(s) for s in RunStatus}


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("", "not a JSON line"),
        ("Loading weights... 100%", "not a JSON line"),
        ("[1, 2]", "not a JSON object"),
        ('{"iteration": 3}', "unknown training event None"),
        ('{"event": "done", "iteration": 3, "model": "m.pt", "losses": {}}', "unknown training event 'done'"),
        ('{"event": "checkpoint", "iteration": 3}', "without 'path'"),
        ('{"event": "checkpoint", "iteration": "3", "path": "c.pt"}', "'iteration' is '3'"),
        ('{"event": "checkpoint", "iteration": true, "path": "c.pt"}', "'iteration' is True"),
        ('{"event": "cancelled", "iteration": 2.5, "checkpoint": "c.pt"}', "'iteration' is 2.5"),
        ('{"event": "finished", "iteration": 3, "model": "m.pt", "losses": {"total_loss": "x"}}', "'losses'"),
        ('{"event": "error", "message": null}', "'message' is None"),
    ],
)
def test_a_malformed_line_is_a_one_line_protocol_error(line: str, says: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_event(line)
    message = str(raised.value)
    assert says in message and "\n" not in message
    assert isinstance(raised.value, ValueError)


def test_a_long_bad_line_is_shortened_in_the_message() -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_event("x" * 5000)
    assert len(str(raised.value)) < 200


def test_fields_a_newer_engine_adds_are_ignored_and_optional_ones_may_be_left_out() -> None:
    line = '{"event": "finished", "iteration": 3, "model": "m.pt", "losses": {"total_loss": 1}, "gpu": "x"}'
    event = parse_event(line)
    assert event == FinishedEvent(iteration=3, model="m.pt", losses={"total_loss": 1}, validation=None)


# ------------------------------------------------------------------------------------- train request

REQUESTS = [
    TrainRequest(train_json="t.json", images="img", out="runs/a", iterations=5),
    TrainRequest(
        train_json="data/train.json",
        images="data/images",
        out="runs/b",
        epochs=2.5,
        val_json="data/val.json",
        val_images="data/val_images",
        weights="runs/a/model_final.pt",
        backbone="mobilenet_v2",
        batch_size=3,
        lr=0.00125,
        min_size=64,
        max_size=96,
        trainable_backbone_layers=0,
        fpn_channels=16,
        hidden_dim=32,
        mask_hidden_channels=8,
        anchor_sizes=(16, 32, 64, 128),
        pretrained_backbone=False,
        checkpoint_every=7,
        eval_every=3,
        seed=11,
        hflip=0.0,
        scale_min=0.5,
        scale_max=2.0,
        scale_jitter=False,
        mixed_precision=False,
        device="cpu",
        num_threads=1,
        progress="jsonl",
        resume=True,
        name="the new one",
        feature_cache_memory_mb=0.5,
    ),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=["defaults", "every-option"])
def test_a_train_request_survives_the_real_command_line_parser(request_: TrainRequest) -> None:
    argv = request_.to_argv()
    assert argv[0] == "train"
    assert TrainRequest.from_args(_parser().parse_args(argv)) == request_


def test_the_request_knows_every_option_of_the_train_command() -> None:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = action.choices["train"]
    dests = {a.dest for a in train._actions if a.dest not in ("help", "run")}
    switches = {"no_pretrained_backbone", "no_scale_jitter", "no_mixed_precision"}
    flipped = {"pretrained_backbone", "scale_jitter", "mixed_precision"}
    assert dests - switches == {f.name for f in fields(TrainRequest)} - flipped


def test_the_parser_takes_its_defaults_from_the_request() -> None:
    parsed = TrainRequest.from_args(
        _parser().parse_args(
            ["train", "--train-json", "t", "--images", "i"] + ["--out", "o", "--epochs", "1"]
        )
    )
    assert parsed == TrainRequest(train_json="t", images="i", out="o", epochs=1.0)


def test_a_request_goes_into_a_run_record_and_back() -> None:
    for request in REQUESTS:
        stored = json.loads(json.dumps(request.to_dict()))
        assert TrainRequest.from_dict(stored) == request
    with pytest.raises(ValueError, match="unknown train options: colour"):
        TrainRequest.from_dict({**REQUESTS[0].to_dict(), "colour": "red"})


def test_bad_requests_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="either iterations or epochs"):
        TrainRequest(train_json="t", images="i", out="o")
    with pytest.raises(ValueError, match="either iterations or epochs"):
        TrainRequest(train_json="t", images="i", out="o", iterations=3, epochs=1.0)
    with pytest.raises(ValueError, match="backbone must be one of"):
        TrainRequest(train_json="t", images="i", out="o", iterations=3, backbone="vgg")
    args = _parser().parse_args(
        ["train", "--train-json", "t", "--images", "i", "--out", "o", "--iterations", "1"]
    )
    args.anchor_sizes = "16,big"
    with pytest.raises(ValueError, match="--anchor-sizes takes whole numbers"):
        TrainRequest.from_args(args)


def test_resumed_is_the_same_run_with_resume() -> None:
    request = REQUESTS[0]
    assert request.resumed() == TrainRequest(**{**request.to_dict(), "resume": True})
    assert request.resumed().to_argv() == [*request.to_argv(), "--resume"]


def test_engine_argv_runs_the_engine_module_at_a_lower_priority() -> None:
    argv = engine_argv(REQUESTS[0].to_argv(), nice=10)
    assert argv[:4] == ["-m", "maskrcnn_core", "--nice", "10"]
    parsed = _parser().parse_args(argv[2:])
    assert parsed.nice == 10 and TrainRequest.from_args(parsed) == REQUESTS[0]


def test_an_evaluate_request_is_a_valid_evaluate_command() -> None:
    request = EvaluateRequest(gt="val.json", weights="base.pt", images="img", device="cpu", num_threads=2)
    parsed = _parser().parse_args(request.to_argv())
    assert (parsed.gt, parsed.weights, parsed.images, parsed.device, parsed.num_threads) == (
        "val.json",
        "base.pt",
        "img",
        "cpu",
        2,
    )
    assert parsed.json and "--device" not in EvaluateRequest("g", "w", "i", device="auto").to_argv()


# --------------------------------------------------------------------------------------------- rules


def test_default_lr_is_the_linear_scaling_rule() -> None:
    assert default_lr(16) == pytest.approx(0.02)
    assert default_lr(2) == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="at least 1"):
        default_lr(0)


def test_iterations_pass_over_the_images_the_epochs_ask_for() -> None:
    assert iterations_for_epochs(10, 7, 2) == 35  # 70 images in steps of 2
    assert iterations_for_epochs(1, 7, 2) == 4  # the last, partial step counts
    assert iterations_for_epochs(0.01, 3, 8) == 1  # at least one step
    request = TrainRequest(train_json="t", images="i", out="o", epochs=3.0, batch_size=4)
    assert request.total_iterations(10) == iterations_for_epochs(3.0, 10, 4)
    assert request.total_iterations(10, world_size=2) == iterations_for_epochs(3.0, 10, 8)
    assert REQUESTS[0].total_iterations(1000) == 5


def test_every_backbone_names_a_factory() -> None:
    from maskrcnn_core.model.factories import _VARIANTS

    assert set(BACKBONES.values()) <= set(_VARIANTS)


def test_the_protocol_and_the_command_line_load_without_torch() -> None:
    code = "import sys, maskrcnn_core.protocol, maskrcnn_core.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_auto_tier_trains_the_heads_on_a_cpu_or_a_small_set_and_everything_on_a_gpu_with_a_large_one() -> (
    None
):
    assert resolve_tier("auto", on_gpu=False, num_train_images=10_000) == "heads"
    assert resolve_tier("auto", on_gpu=True, num_train_images=HEADS_TIER_MAX_IMAGES - 1) == "heads"
    assert resolve_tier("auto", on_gpu=True, num_train_images=HEADS_TIER_MAX_IMAGES) == "full"
    assert resolve_tier("full", on_gpu=False, num_train_images=3) == "full"  # a choice is kept
    with pytest.raises(ValueError, match="tier must be one of"):
        resolve_tier("backbone", on_gpu=False, num_train_images=3)


def test_the_heads_tier_refuses_what_it_does_not_apply_and_auto_does_not() -> None:
    plain = dict(train_json="t", images="i", out="o", iterations=3)
    with pytest.raises(ValueError, match=r"--tier heads does not apply --trainable-backbone-layers 3 \("):
        TrainRequest(**plain, tier="heads", trainable_backbone_layers=3)
    with pytest.raises(ValueError, match="does not apply the scale jitter 0.5-1.25"):
        TrainRequest(**plain, tier="heads", scale_min=0.5)
    # what agrees with a frozen backbone and one scale is fine: 0 stages, no jitter, the default range
    TrainRequest(**plain, tier="heads", trainable_backbone_layers=0)
    TrainRequest(**plain, tier="heads", scale_min=0.5, scale_jitter=False)
    TrainRequest(**plain, tier="heads")
    # auto may resolve to full, so it takes them (the run says what it ignores when it is heads)
    auto = TrainRequest(**plain, trainable_backbone_layers=3, scale_max=2.0)
    assert len(heads_tier_ignores(auto.trainable_backbone_layers, auto.scale_range)) == 2
    assert heads_tier_ignores(None, (0.8, 1.25)) == () and heads_tier_ignores(0, None) == ()


def test_the_feature_cache_budget_is_a_number_of_megabytes_zero_or_more() -> None:
    plain = dict(train_json="t", images="i", out="o", iterations=3)
    for bad in (-1, float("nan"), float("inf"), "512", True):
        with pytest.raises(ValueError, match="--feature-cache-memory-mb takes a number of megabytes"):
            TrainRequest(**plain, feature_cache_memory_mb=bad)
    argv = ["train", "--train-json", "t", "--images", "i", "--out", "o", "--epochs", "1"]
    args = _parser().parse_args(argv)
    for text, value in (("0", 0), ("1024", 1024), ("2.5", 2.5)):
        args.feature_cache_memory_mb = text
        assert TrainRequest.from_args(args).feature_cache_memory_mb == value
    args.feature_cache_memory_mb = "lots"
    with pytest.raises(ValueError, match="takes a number of megabytes .* got 'lots'"):
        TrainRequest.from_args(args)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--tier", "heads", "--trainable-backbone-layers", "3"], "--tier heads does not apply"),
        (["--tier", "heads", "--scale-max", "1.5"], "does not apply the scale jitter 0.8-1.5"),
        (["--feature-cache-memory-mb", "-5"], "--feature-cache-memory-mb takes a number"),
        (["--feature-cache-memory-mb", "lots"], "--feature-cache-memory-mb takes a number"),
    ],
)
def test_the_train_command_refuses_them_in_one_line_with_the_bad_usage_code(
    flags: list[str], says: str, tmp_path, capsys
) -> None:
    from maskrcnn_core.cli import main
    from maskrcnn_core.protocol import ExitCode

    argv = ["train", "--train-json", "t.json", "--images", "i", "--out", str(tmp_path / "run")]
    code = main([*argv, "--iterations", "1", *flags])
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.BAD_INPUT
    assert err.startswith("error: ") and says in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()
