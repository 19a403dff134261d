"""``python -m maskrcnn_core`` end to end: train (JSON lines, SIGTERM, --resume), predict, evaluate, errors.

Named ``test_engine_cli.py`` because ``tests/app/test_cli.py`` (the app's command line) already takes
``test_cli.py`` and pytest's default import mode needs unique test file names.

Training runs in a child process (it installs SIGINT/SIGTERM handlers, and its exit code and stdout are
what the app reads); predict, evaluate and the bad-input cases call ``main()`` in this process, which is
the same code without a torch import per case.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import TINY_CLI_FLAGS

from maskrcnn_core import load_model
from maskrcnn_core.cli import _parser, main
from maskrcnn_core.data import generate_synthetic_dataset
from maskrcnn_core.protocol import FINAL_MODEL, LAST_CHECKPOINT, METRICS_LOG, ExitCode, parse_event

pytestmark = pytest.mark.slow

CATEGORY_IDS = (11, 22)  # not 1..K: the results must carry the dataset's own ids
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_command(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "maskrcnn_core",
        "train",
        "--train-json",
        str(root / "train.json"),
        "--images",
        str(root / "images"),
        "--out",
        str(out),
        *TINY_CLI_FLAGS,
        "--device",
        "cpu",
        "--num-threads",
        "1",
        "--progress",
        "jsonl",
        *extra,
    ]


def _json_lines(text: str) -> list[dict]:
    """Every stdout line must be one JSON object: the app parses them one by one."""
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_shapes")
    generate_synthetic_dataset(
        root,
        num_images=4,
        seed=3,
        image_size=(64, 80),
        class_names=("circle", "square"),
        category_ids=CATEGORY_IDS,
    )
    return root


@pytest.fixture(scope="module")
def trained(
    shapes: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("cli_run") / "run"
    command = _train_command(shapes, out, "--iterations", "3", "--checkpoint-every", "2", "--batch-size", "2")
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=ENV)
    return done, out


def test_train_prints_json_lines_and_writes_the_run(trained) -> None:
    done, out = trained
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    events = _json_lines(done.stdout)
    kinds = [e["event"] for e in events]
    # the default tier on a CPU is heads: the features of the 4 images and their mirror images come first
    steps = ["progress", "progress", "checkpoint", "progress", "checkpoint", "finished"]
    assert kinds == ["start", *["caching"] * 4, *steps]
    assert events[0]["iterations"] == 3 and events[0]["start_iteration"] == 0 and events[0]["tier"] == "heads"
    assert events[4]["done"] == events[4]["total"] == 8
    progress = events[5]
    assert progress["iteration"] == 1 and progress["iterations"] == 3
    assert {"total_loss", "mask_loss", "rpn_cls_loss"} <= set(progress["losses"])
    assert progress["lr"] > 0 and progress["images_per_s"] > 0
    assert events[-1]["model"] == str(out / FINAL_MODEL)
    # the metrics log holds the same events, and each line is a typed event of the protocol
    assert [parse_event(line).to_dict() for line in done.stdout.splitlines()] == events
    assert _json_lines((out / METRICS_LOG).read_text()) == events
    model = load_model(out / FINAL_MODEL)
    assert model.config.category_ids == CATEGORY_IDS and model.config.class_names == ("circle", "square")
    assert (out / LAST_CHECKPOINT).is_file()


def test_predict_writes_coco_results_with_the_datasets_ids(trained, shapes: Path, tmp_path: Path) -> None:
    _, run = trained
    weights = str(run / FINAL_MODEL)
    common = ["--weights", weights, "--images", str(shapes / "images"), "--score-thresh", "0.0"]
    common += ["--device", "cpu", "--num-threads", "1", "--progress", "none"]

    with_coco = tmp_path / "with_coco.json"
    assert main(["predict", *common, "--coco", str(shapes / "train.json"), "--out", str(with_coco)]) == 0
    results = json.loads(with_coco.read_text())
    assert results, "an untrained head still scores above 0: the checks below need detections"
    assert {r["image_id"] for r in results} <= {1, 2, 3, 4}
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        rle = r["segmentation"]
        assert rle["size"] == [64, 80] and isinstance(rle["counts"], str)  # compressed RLE, JSON-safe
        assert len(r["bbox"]) == 4 and 0.0 <= r["score"] <= 1.0

    # a folder alone: image ids count the sorted files, and each result names its file
    without = tmp_path / "without.json"
    assert main(["predict", *common, "--out", str(without)]) == 0
    results = json.loads(without.read_text())
    names = sorted(p.name for p in (shapes / "images").iterdir())
    assert results and all(r["file_name"] == names[r["image_id"] - 1] for r in results)


def test_evaluate_prints_a_table_or_json_from_results_or_weights(
    trained, shapes: Path, tmp_path: Path, capsys
) -> None:
    _, run = trained
    gt = str(shapes / "train.json")
    # ground truth turned into perfect results: AP 1 in both modes, a check of the whole path
    coco = json.loads((shapes / "train.json").read_text())
    perfect = [
        {**{k: a[k] for k in ("image_id", "category_id", "bbox", "segmentation")}, "score": 1.0}
        for a in coco["annotations"]
    ]
    pred = tmp_path / "perfect.json"
    pred.write_text(json.dumps(perfect))

    assert main(["evaluate", "--gt", gt, "--pred", str(pred)]) == 0
    table = capsys.readouterr().out
    assert "circle" in table and "square" in table and "1.000" in table

    assert main(["evaluate", "--gt", gt, "--pred", str(pred), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["segm"]["ap"] == pytest.approx(1.0) and metrics["bbox"]["ap"] == pytest.approx(1.0)
    assert {c["category_id"] for c in metrics["segm"]["per_class_ap"]} == set(CATEGORY_IDS)

    weights = ["--weights", str(run / FINAL_MODEL), "--images", str(shapes / "images")]
    assert main(["evaluate", "--gt", gt, *weights, "--device", "cpu", "--num-threads", "1", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_images"] == 4 and 0.0 <= metrics["segm"]["ap"] < 1.0


def _broken_copy(shapes: Path, tmp_path: Path, edit) -> Path:
    coco = json.loads((shapes / "train.json").read_text())
    edit(coco)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(coco))
    return path


def _train_args(json_path: Path, images: Path, out: Path) -> list[str]:
    return ["train", "--train-json", str(json_path), "--images", str(images), "--out", str(out)]


def _polygon(coco: dict) -> None:
    coco["annotations"][0]["segmentation"] = [[1.0, 1.0, 5.0, 1.0]]  # 2 points


def _unknown_ids(coco: dict) -> None:
    coco["annotations"][1]["image_id"] = 999
    coco["annotations"][2]["category_id"] = 555


def _missing_file(coco: dict) -> None:
    coco["images"][1]["file_name"] = "gone.png"


def test_bad_input_exits_2_with_a_report_naming_images_and_annotations(
    shapes: Path, tmp_path: Path, capsys
) -> None:
    images = shapes / "images"
    out = tmp_path / "run"
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"images": [')
    assert main([*_train_args(malformed, images, out), "--iterations", "1"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error:") and "malformed.json" in err and "JSON" in err

    no_images_key = _broken_copy(shapes, tmp_path, lambda c: c.pop("images"))
    assert main([*_train_args(no_images_key, images, out), "--iterations", "1"]) == ExitCode.BAD_INPUT
    assert "images" in capsys.readouterr().err

    assert main(["evaluate", "--gt", str(malformed), "--pred", str(malformed)]) == ExitCode.BAD_INPUT
    assert "cannot read the ground truth" in capsys.readouterr().err
    assert main(["predict", "--weights", "nowhere.pt", "--images", str(images), "--out", "r.json"]) == 2
    assert "nowhere.pt" in capsys.readouterr().err

    # what can be skipped is named (image and annotation ids) and counted; an image list can still be used
    for edit, expected in (
        (_polygon, ["annotation 1, image 1"]),
        (_unknown_ids, ["annotation 2", "999", "annotation 3", "555"]),
        (_missing_file, ["image 2", "gone.png"]),
    ):
        broken = _broken_copy(shapes, tmp_path, edit)
        code = main(["evaluate", "--gt", str(broken), "--weights", "x.pt", "--images", str(tmp_path / "no")])
        assert code == ExitCode.BAD_INPUT  # no images folder: fatal
        assert "does not exist" in capsys.readouterr().err
        results = tmp_path / "r.json"
        args = ["predict", "--weights", "missing.pt", "--images", str(images), "--coco", str(broken)]
        assert main([*args, "--out", str(results)]) == ExitCode.BAD_INPUT  # the weights are missing ...
        err = capsys.readouterr().err
        assert "skipped" in err and all(e in err for e in expected), err  # ... after the report


def test_training_refuses_fatal_problems_and_skips_the_rest(shapes: Path, tmp_path: Path) -> None:
    # duplicate image ids are fatal: nothing trains, exit 2, the report names the id
    def duplicate(coco: dict) -> None:
        coco["images"][1]["id"] = coco["images"][0]["id"]

    fatal = _broken_copy(shapes, tmp_path, duplicate)
    command = _train_command(shapes, tmp_path / "fatal", "--iterations", "1")
    command[command.index(str(shapes / "train.json"))] = str(fatal)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr[-2000:]
    assert "fatal" in done.stderr and "duplicate" in done.stderr.lower() and "1" in done.stderr
    assert not (tmp_path / "fatal" / FINAL_MODEL).exists()

    # a short polygon and a missing image are skipped and counted, and training goes on
    def skippable(coco: dict) -> None:
        _polygon(coco)
        _missing_file(coco)

    partial = _broken_copy(shapes, tmp_path, skippable)
    command = _train_command(shapes, tmp_path / "partial", "--iterations", "1")
    command[command.index(str(shapes / "train.json"))] = str(partial)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    assert "skipped 1 images and 1 annotations" in done.stderr
    assert "annotation 1, image 1" in done.stderr and "image 2" in done.stderr
    start = _json_lines(done.stdout)[0]
    assert start["event"] == "start" and start["num_train_images"] == 3


def test_sigterm_writes_a_checkpoint_exits_3_and_resume_finishes(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    iterations = "40"
    command = _train_command(shapes, out, "--iterations", iterations, "--checkpoint-every", "1000")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if json.loads(line)["event"] == "progress":  # the handlers are installed: training has begun
                process.send_signal(signal.SIGTERM)
                break
        rest, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == ExitCode.CANCELLED, err[-2000:]
    events = _json_lines("".join(lines) + rest)
    cancelled = events[-1]
    assert cancelled["event"] == "cancelled" and events[-2]["event"] == "checkpoint"
    stopped_at = cancelled["iteration"]
    assert 1 <= stopped_at < int(iterations), "SIGTERM came too late to test anything"
    assert cancelled["checkpoint"] == str(out / LAST_CHECKPOINT) and not (out / FINAL_MODEL).exists()
    assert "--resume" in err

    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=180, env=ENV)
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    resumed = _json_lines(done.stdout)
    assert resumed[0]["event"] == "start" and resumed[0]["start_iteration"] == stopped_at
    assert resumed[-1]["event"] == "finished" and resumed[-1]["iteration"] == int(iterations)
    # the log of both runs together has every iteration once
    logged = _json_lines((out / METRICS_LOG).read_text())
    steps = [e["iteration"] for e in logged if e["event"] == "progress"]
    assert steps == list(range(1, int(iterations) + 1))
    assert load_model(out / FINAL_MODEL).checkpoint_metadata["iteration"] == int(iterations)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "synthetic"])
def test_help_documents_every_flag_with_an_example(command: str) -> None:
    sub = _subparsers()[command]
    undocumented = [a.dest for a in sub._actions if not a.help or a.help == argparse.SUPPRESS]
    assert undocumented == []
    text = sub.format_help()
    assert "example" in text and f"maskrcnn-core {command}" in text
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in text


def test_help_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "maskrcnn_core", "train", "--help"], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 0 and "--train-json" in done.stdout and "example" in done.stdout


@pytest.mark.parametrize("niceness", ["20", "-5", "ten"])
def test_a_bad_nice_value_is_refused_before_anything_runs(tmp_path, capsys, niceness: str) -> None:
    out = tmp_path / "synthetic"
    with pytest.raises(SystemExit) as exited:
        main(["--nice", niceness, "synthetic", str(out), "--num-images", "1"])
    assert exited.value.code == ExitCode.BAD_INPUT
    assert "--nice" in capsys.readouterr().err
    assert not out.exists()


def test_training_on_cuda_without_a_gpu_is_bad_input(shapes: Path, tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    args = [*_train_args(shapes / "train.json", shapes / "images", tmp_path / "run"), "--iterations", "1"]
    assert main([*args, "--device", "cuda"]) == ExitCode.BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: --device cuda: no CUDA device is available"
    assert not (tmp_path / "run").exists()
