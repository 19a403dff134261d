"""A corpus of bad inputs, built here by code: each gets a one-line error with its true reason, no hang,
no traceback, and nothing written where it must not be."""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_model import TINY_CLI_FLAGS

from app.resources import DEMO_MODEL
from maskrcnn_core.cli import main
from maskrcnn_core.data import generate_synthetic_dataset
from maskrcnn_core.data.coco import CocoValidationError, load_coco
from maskrcnn_core.engine.evaluation import evaluate_coco
from maskrcnn_core.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image
from maskrcnn_core.model.weights import CheckpointError, read_checkpoint
from maskrcnn_core.paths import JsonFileError, read_json
from maskrcnn_core.protocol import ExitCode
from maskrcnn_core.types import Category, ClassMap

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


def _finishes(call, seconds: float = 20.0):
    """Run ``call`` in a thread and return what it raised; fail (rather than hang) if it blocks."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input_shapes")
    generate_synthetic_dataset(
        root, num_images=3, seed=5, image_size=(48, 64), class_names=("circle", "square")
    )
    return root


# ------------------------------------------------------------------------------------------ weights


def _random_bytes(path: Path) -> None:
    path.write_bytes(bytes(range(1, 256)) * 4)  # starts with 0x01: neither a zip nor a pickle


def _truncated_zip(path: Path) -> None:
    path.write_bytes(DEMO_MODEL.read_bytes()[:4096])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_random_bytes, "is not a checkpoint"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (_truncated_zip, "damaged or truncated"),
    ],
    ids=["random-bytes", "directory", "empty", "truncated"],
)
def test_a_bad_weights_file_gets_its_true_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert reason in message and str(path) in message and "\n" not in message
    assert "code could run" not in message


@needs_fifo
def test_a_named_pipe_as_weights_is_not_a_regular_file_and_is_never_opened(tmp_path: Path) -> None:
    pipe = tmp_path / "model.pt"
    os.mkfifo(pipe)
    error = _finishes(lambda: read_checkpoint(pipe))
    assert isinstance(error, CheckpointError) and "not a regular file" in str(error)


# ------------------------------------------------------------------------------------------ images


@needs_fifo
def test_a_named_pipe_called_png_is_refused_without_opening_it(tmp_path: Path) -> None:
    pipe = tmp_path / "x.png"
    os.mkfifo(pipe)
    error = _finishes(lambda: read_image(pipe))
    assert isinstance(error, ImageReadError) and "not a regular file" in str(error)


@needs_fifo
def test_predict_skips_a_named_pipe_called_png_and_writes_the_other_results(
    shapes: Path, tmp_path: Path, capsys
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = sorted((shapes / "images").iterdir())[0]
    (images / "a.png").write_bytes(source.read_bytes())
    os.mkfifo(images / "x.png")
    out = tmp_path / "results.json"
    args = ["predict", "--weights", str(DEMO_MODEL), "--images", str(images), "--out", str(out)]
    codes: list[int] = []
    assert _finishes(lambda: codes.append(main(args)), seconds=120) is None
    assert codes == [ExitCode.OK]
    assert "x.png" in capsys.readouterr().err and isinstance(json.loads(out.read_text()), list)


def test_animated_gif_is_an_image_read_as_its_first_frame(tmp_path: Path) -> None:
    assert ".gif" in IMAGE_EXTENSIONS
    frames = [Image.new("RGB", (20, 10), color) for color in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    rgb = read_image(path)
    assert rgb.shape == (10, 20, 3)
    assert rgb[5, 5, 0] > 200 and rgb[5, 5, 2] < 50  # the red first frame, not the blue second


# ------------------------------------------------------------------------------------------ JSON


def _deep_json(path: Path, depth: int = 100_000) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path


def test_deeply_nested_json_is_one_clear_error_everywhere_json_is_read(shapes: Path, tmp_path: Path) -> None:
    deep = _deep_json(tmp_path / "deep.json")
    with pytest.raises(JsonFileError, match="nested too deeply"):
        read_json(deep)
    with pytest.raises(CocoValidationError, match="nested too deeply"):
        load_coco(deep, shapes / "images")
    with pytest.raises(ValueError, match="nested too deeply"):
        evaluate_coco(shapes / "train.json", deep)
    with pytest.raises(ValueError, match="nested too deeply"):
        evaluate_coco(deep, [])


# ------------------------------------------------------------------------------------------ COCO validator


def _edited(shapes: Path, tmp_path: Path, edit) -> Path:
    coco = json.loads((shapes / "train.json").read_text())
    edit(coco)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(coco))
    return path


def _huge_category_id(coco: dict) -> None:
    old = coco["categories"][0]["id"]
    coco["categories"][0]["id"] = 2**64 + 1
    for ann in coco["annotations"]:
        if ann["category_id"] == old:
            ann["category_id"] = 2**64 + 1


def _image_listed_twice(coco: dict) -> None:
    coco["images"].append({**coco["images"][0], "id": 999})


def _same_category_name(coco: dict) -> None:
    coco["categories"][1]["name"] = coco["categories"][0]["name"]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_huge_category_id, "does not fit in 64 bits"),
        (_image_listed_twice, "is listed twice"),
        (_same_category_name, "duplicate category name"),
    ],
    ids=["id-beyond-64-bits", "image-twice", "same-category-name"],
)
def test_the_validator_refuses_what_import_and_training_cannot_use(
    shapes: Path, tmp_path: Path, edit, fragment: str
) -> None:
    with pytest.raises(CocoValidationError, match=fragment):
        load_coco(_edited(shapes, tmp_path, edit), shapes / "images")


# ------------------------------------------------------------------------------------------ evaluate --pred


def _perfect_results(shapes: Path, tmp_path: Path) -> Path:
    coco = json.loads((shapes / "train.json").read_text())
    results = [
        {**{k: a[k] for k in ("image_id", "category_id", "bbox", "segmentation")}, "score": 1.0}
        for a in coco["annotations"]
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


def _first_annotation(coco: dict) -> dict:
    return coco["annotations"][0]


def _wrong_size_rle(coco: dict) -> None:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.ones((5, 5), dtype=np.uint8)))
    _first_annotation(coco)["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


_GROUND_TRUTH_EDITS = {
    "json-list": lambda coco: coco.clear(),  # written as [] below
    "4-number-polygon": lambda coco: _first_annotation(coco).update(segmentation=[[1, 1, 10, 10]]),
    "5-number-polygon": lambda coco: _first_annotation(coco).update(segmentation=[[1, 1, 10, 1, 10]]),
    "empty-segmentation": lambda coco: _first_annotation(coco).update(segmentation=[]),
    "missing-segmentation": lambda coco: _first_annotation(coco).pop("segmentation"),
    "rle-of-the-wrong-size": _wrong_size_rle,
    "duplicate-annotation-id": lambda coco: coco["annotations"].append(copy.deepcopy(coco["annotations"][0])),
    "duplicate-category-id": lambda coco: coco["categories"].append({**coco["categories"][0], "name": "x"}),
}


@pytest.mark.parametrize("name", sorted(_GROUND_TRUTH_EDITS))
def test_evaluate_pred_refuses_a_malformed_ground_truth_in_one_message(
    shapes: Path, tmp_path: Path, capsys, name: str
) -> None:
    coco = json.loads((shapes / "train.json").read_text())
    _GROUND_TRUTH_EDITS[name](coco)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco if coco else []))
    pred = _perfect_results(shapes, tmp_path)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(gt) in err and "Traceback" not in err


def test_evaluate_pred_still_scores_a_valid_ground_truth(shapes: Path, tmp_path: Path, capsys) -> None:
    pred = _perfect_results(shapes, tmp_path)
    assert main(["evaluate", "--gt", str(shapes / "train.json"), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segm"]["ap"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ class matching


def test_classes_are_matched_by_name_only_when_ids_and_names_disagree() -> None:
    model = ClassMap((Category(1, "circle"), Category(2, "square"), Category(3, "star")))
    same = ClassMap((Category(1, "circle"), Category(2, "square")))
    renumbered = ClassMap((Category(0, "square"), Category(7, "circle")))
    assert model.ids_by_name_where_ids_disagree(same) is None
    assert model.ids_by_name_where_ids_disagree(renumbered) == {1: 7, 2: 0}
    assert model.ids_by_name_where_ids_disagree(ClassMap((Category(1, "dog"),))) is None


# ------------------------------------------------------------------------------------------ --out


def _out_cases(tmp_path: Path) -> dict[str, Path]:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    project = tmp_path / "photos" / ".maskrcnn-studio"
    project.mkdir(parents=True)
    (project / "project.sqlite").write_bytes(b"the project's database")
    return {
        "under-a-file": blocker / "out.json",
        "onto-a-folder": folder,
        "project": project / "project.sqlite",
    }


@pytest.mark.parametrize("case", ["under-a-file", "onto-a-folder", "project"])
def test_predict_refuses_an_unwritable_out_before_any_inference(
    shapes: Path, tmp_path: Path, capsys, case: str
) -> None:
    out = _out_cases(tmp_path)[case]
    missing_weights = tmp_path / "no-such-model.pt"  # never reached: the --out check comes first
    argv = [
        "predict",
        "--weights",
        str(missing_weights),
        "--images",
        str(shapes / "images"),
        "--out",
        str(out),
    ]
    assert main(argv) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "--out" in err and "no-such-model" not in err and len(err.strip().splitlines()) == 1
    assert (
        tmp_path / "photos" / ".maskrcnn-studio" / "project.sqlite"
    ).read_bytes() == b"the project's database"


@pytest.mark.parametrize("case", ["under-a-file", "project"])
def test_synthetic_and_train_refuse_an_unwritable_out(
    shapes: Path, tmp_path: Path, capsys, case: str
) -> None:
    out = _out_cases(tmp_path)[case]
    assert main(["synthetic", str(out), "--num-images", "1"]) == ExitCode.BAD_INPUT
    train = ["train", "--train-json", str(shapes / "train.json"), "--images", str(shapes / "images")]
    train += ["--iterations", "1", *TINY_CLI_FLAGS]
    assert main([*train, "--out", str(out)]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert f"output folder {out}" in err and f"--out {out}" in err and "Traceback" not in err
    assert (
        tmp_path / "photos" / ".maskrcnn-studio" / "project.sqlite"
    ).read_bytes() == b"the project's database"


def test_training_refuses_a_file_without_annotations(shapes: Path, tmp_path: Path, capsys) -> None:
    empty = _edited(shapes, tmp_path, lambda coco: coco["annotations"].clear())
    argv = [
        "train",
        "--train-json",
        str(empty),
        "--images",
        str(shapes / "images"),
        "--out",
        str(tmp_path / "r"),
        "--iterations",
        "1",
        *TINY_CLI_FLAGS,
    ]
    assert main(argv) == ExitCode.BAD_INPUT
    assert "no usable annotations" in capsys.readouterr().err


def test_evaluate_weights_matches_classes_by_name_when_the_ids_disagree(tmp_path: Path, capsys) -> None:
    """The demo model's classes are ids 1..4; the same four names under ids 0..3 score the same, with a
    warning that the classes were matched by name."""
    numbered = generate_synthetic_dataset(tmp_path / "by_id", num_images=3, seed=11)
    renumbered = generate_synthetic_dataset(
        tmp_path / "by_name", num_images=3, seed=11, category_ids=[0, 1, 2, 3]
    )
    scores = []
    for gt in (numbered, renumbered):
        argv = [
            "evaluate",
            "--gt",
            str(gt),
            "--weights",
            str(DEMO_MODEL),
            "--images",
            str(gt.parent / "images"),
        ]
        assert main([*argv, "--device", "cpu", "--num-threads", "1", "--json"]) == 0
        captured = capsys.readouterr()
        result = json.loads(captured.out)
        scores.append({c["name"]: c["ap"] for c in result["segm"]["per_class_ap"]})
        matched_by_name = "matching classes by name" in captured.err
        assert matched_by_name == (gt == renumbered), captured.err
    assert scores[0] == scores[1] and scores[0]["circle"] > 0.1


@needs_fifo
def test_a_coco_file_naming_a_pipe_skips_it_as_not_a_regular_file(shapes: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    coco = json.loads((shapes / "train.json").read_text())
    for image in coco["images"]:
        (images / image["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        (images / image["file_name"]).write_bytes((shapes / "images" / image["file_name"]).read_bytes())
    piped = coco["images"][0]["file_name"]
    (images / piped).unlink()
    os.mkfifo(images / piped)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco))
    outcome: list = []
    assert _finishes(lambda: outcome.append(load_coco(gt, images))) is None
    data, report = outcome[0]
    assert len(data.images) == len(coco["images"]) - 1
    assert any("not a regular file" in str(issue) for issue in report.skipped), report.summary()


def test_a_project_folder_is_refused_except_the_folder_of_a_run(tmp_path: Path) -> None:
    from maskrcnn_core.paths import PROJECT_DIR_NAME, PROJECT_RUNS_DIR, check_output_dir, check_output_file

    project = tmp_path / "photos" / PROJECT_DIR_NAME
    (project / PROJECT_RUNS_DIR).mkdir(parents=True)
    run = project / PROJECT_RUNS_DIR / "20261207-demo-ft1"
    # the app's own fine-tuning runs write their checkpoints and logs here
    assert check_output_dir(run) == run
    assert check_output_file(run / "metrics.json") == run / "metrics.json"
    for refused in (project, project / "project.sqlite", project / PROJECT_RUNS_DIR, project / "x" / "y"):
        with pytest.raises(ValueError, match="inside the project folder"):
            check_output_file(refused)
    # a project kept elsewhere (a read-only images folder) is refused by its own path
    elsewhere = tmp_path / "chosen"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match=f"inside the project folder {elsewhere}"):
        check_output_file(elsewhere / "export.json", project_dir=elsewhere)
    assert check_output_file(tmp_path / "export.json", project_dir=elsewhere) == tmp_path / "export.json"
