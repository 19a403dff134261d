"""COCO and labelme import / export through ``maskrcnn-studio import|export``, checked with pycocotools:
holes and multi-part masks survive pixel for pixel, category ids are stable, COCOeval of the export
against its source gives AP = 1.0, bad entries are reported and skipped, a killed import changes nothing."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tiny_model import TINY_CLI_FLAGS

from app.__main__ import main
from app.project.records import ImageStatus
from app.project.store import ProjectStore

ROOT = Path(__file__).resolve().parents[2]
H, W = 64, 80


def _ring(x0, y0, x1, y1, hole=4) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    m[y0 + hole : y1 - hole, x0 + hole : x1 - hole] = 0
    return m


def _rle(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png", "sub/c.png"):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture
def truth(folder, tmp_path) -> Path:
    """Holes (RLE), two parts in one instance, polygons, uncompressed RLE, iscrowd as int and as bool,
    non-contiguous category ids."""
    two_parts = np.zeros((H, W), np.uint8)
    two_parts[5:15, 5:15] = 1
    two_parts[40:60, 50:75] = 1
    uncompressed = np.zeros((H, W), np.uint8)
    uncompressed[20:30, 30:70] = 1
    column_runs = _uncompressed_counts(uncompressed)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": _rle(_ring(10, 10, 40, 40)), "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 12, "segmentation": _rle(two_parts), "iscrowd": False},
        {
            "id": 3,
            "image_id": 2,
            "category_id": 12,
            "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]],
            "iscrowd": 0,
        },
        {
            "id": 4,
            "image_id": 3,
            "category_id": 7,
            "segmentation": {"size": [H, W], "counts": column_runs},
            "iscrowd": 0,
        },
    ]
    for ann in anns:
        ann["bbox"], ann["area"] = [0, 0, 1, 1], 1  # wrong on purpose: the export recomputes them
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W},
            {"id": 2, "file_name": "b.png", "height": H, "width": W},
            {"id": 3, "file_name": "sub/c.png", "height": H, "width": W},
        ],
        "annotations": anns,
        "categories": [{"id": 7, "name": "cell"}, {"id": 12, "name": "nucleus"}],
    }
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(data))
    return path


def _uncompressed_counts(m: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of 0s."""
    flat = m.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat)))) if flat.size else np.array([], int)
    bounds = np.concatenate(([0], edges, [flat.size]))
    return [int(v) for v in np.diff(bounds)]


def _masks(coco: COCO) -> dict:
    """``{(file_name, category_id): sorted mask bytes}`` for comparing pixel for pixel."""
    out: dict = {}
    for image in coco.loadImgs(coco.getImgIds()):
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            out.setdefault((image["file_name"], ann["category_id"]), []).append(coco.annToMask(ann).tobytes())
    return {k: sorted(v) for k, v in out.items()}


def test_import_export_rle_is_pixel_exact_with_stable_ids_and_ap_1(folder, truth, tmp_path):
    assert main(["import", str(folder), str(truth)]) == 0
    out = tmp_path / "export.json"
    assert main(["export", str(folder), "--out", str(out), "--format", "rle"]) == 0
    source, exported = COCO(str(truth)), COCO(str(out))
    assert _masks(exported) == _masks(source)  # holes and both parts kept
    assert sorted(exported.getCatIds()) == [7, 12]  # the file's own ids
    for ann in exported.loadAnns(exported.getAnnIds()):
        mask = exported.annToRLE(ann)
        assert ann["iscrowd"] == 0
        assert ann["area"] == int(mask_utils.area(mask))
        assert ann["bbox"] == pytest.approx(mask_utils.toBbox(mask).tolist())
    # COCOeval of the export, as results, against the file it came from.
    names = {im["file_name"]: im["id"] for im in source.loadImgs(source.getImgIds())}
    results = [
        {
            "image_id": names[exported.loadImgs(a["image_id"])[0]["file_name"]],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in exported.loadAnns(exported.getAnnIds())
    ]
    evaluation = COCOeval(source, source.loadRes(results), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)
    # The training reader takes the export as it is: nothing skipped.
    from maskrcnn_core.data.coco import load_coco

    data, report = load_coco(out, folder)
    assert data.num_annotations == 4 and not report.skipped


def test_polygon_export_and_only_filters(folder, truth, tmp_path):
    assert main(["import", str(folder), str(truth)]) == 0
    out = tmp_path / "poly.json"
    assert main(["export", str(folder), "--out", str(out), "--format", "polygon"]) == 0
    exported = COCO(str(out))
    assert _masks(exported) == _masks(COCO(str(truth)))  # the ring falls back to RLE, the rest are polygons
    kinds = {type(a["segmentation"]).__name__ for a in exported.loadAnns(exported.getAnnIds())}
    assert kinds == {"list", "dict"}
    with ProjectStore.open(folder) as store:
        image = store.image_by_name("b.png")
        store.set_verified(image.id, True)
        # An image only the model has seen.
        store.add_images(["extra.png"])
    Image.new("RGB", (W, H)).save(folder / "extra.png")
    for only, expected in (("verified", {"b.png"}), ("annotated", {"a.png", "b.png", "sub/c.png"})):
        path = tmp_path / f"{only}.json"
        assert main(["export", str(folder), "--out", str(path), "--only", only]) == 0
        assert {im["file_name"] for im in json.loads(path.read_text())["images"]} == expected


def test_bad_entries_are_reported_and_the_rest_imported(folder, truth, tmp_path, capsys):
    data = json.loads(truth.read_text())
    (tmp_path / "outside.png").write_bytes((folder / "a.png").read_bytes())
    data["images"] += [
        {"id": 10, "file_name": "missing.png", "height": H, "width": W},
        {"id": 11, "file_name": str(tmp_path / "outside.png"), "height": H, "width": W},
        {"id": 12, "file_name": "../outside.png", "height": H, "width": W},
    ]
    data["annotations"] += [
        {"id": 20, "image_id": 1, "category_id": 99, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
        {"id": 21, "image_id": 2, "category_id": 7, "segmentation": [[1, 1, 2, 2]], "iscrowd": 0},
        {"id": 22, "image_id": 2, "category_id": 7, "segmentation": {"size": [H, W], "counts": "x"}},
        {"id": 23, "image_id": 10, "category_id": 7, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
        {"id": 24, "image_id": 11, "category_id": 7, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
        {"id": 25, "image_id": 12, "category_id": 7, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 0},
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["import", str(folder), str(bad)]) == 0
    report = capsys.readouterr().out
    for needle in (
        "unknown category id 99",
        "annotation 21",
        "annotation 22",
        "missing.png",
        "absolute path",
        "outside the images folder",
    ):
        assert needle in report, needle
    with ProjectStore.open(folder) as store:
        assert len(store.instances()) == 4  # every valid annotation
        assert {i.file_name for i in store.images()} == {"a.png", "b.png", "sub/c.png"}
    # The same file again: nothing duplicated.
    assert main(["import", str(folder), str(bad)]) == 0
    with ProjectStore.open(folder) as store:
        assert len(store.instances()) == 4


def test_a_killed_import_leaves_the_project_as_it_was(folder, truth):
    with ProjectStore.open(folder) as store:
        store.add_images(["a.png"])
    # The import process is SIGKILLed while its transaction has written half of the file.
    script = (
        "import os, signal, sys\n"
        "from app.project.store import ProjectStore\n"
        "from app.__main__ import main\n"
        "calls = []\n"
        "original = ProjectStore.import_instances\n"
        "def dying(self, *a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(self, *a, **k)\n"
        "ProjectStore.import_instances = dying\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script, "import", str(folder), str(truth)], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL
    with ProjectStore.open(folder) as store:
        assert store.integrity_check() == "ok"
        assert [i.file_name for i in store.images()] == ["a.png"]
        assert store.instances() == [] and store.categories() == []
    assert main(["import", str(folder), str(truth)]) == 0  # and it can be imported afterwards
    with ProjectStore.open(folder) as store:
        assert len(store.instances()) == 4


def _png_b64(patch: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(patch.astype(np.uint8) * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_labelme_polygons_rectangles_circles_masks_and_groups(folder, tmp_path, capsys):
    patch = np.zeros((10, 12), bool)
    patch[2:8, 3:10] = True
    patch[4:6, 5:7] = False  # a hole
    labelme = {
        "version": "5.4.1",
        "imagePath": "a.png",
        "imageHeight": H,
        "imageWidth": W,
        "imageData": None,
        "shapes": [
            {
                "label": "cell",
                "points": [[5, 5], [30, 5], [30, 25]],
                "shape_type": "polygon",
                "group_id": None,
            },
            {"label": "cell", "points": [[40, 40], [60, 55]], "shape_type": "rectangle", "group_id": 1},
            {"label": "cell", "points": [[65, 10], [70, 10]], "shape_type": "circle", "group_id": 1},
            {
                "label": "nucleus",
                "points": [[50, 2], [61, 11]],
                "shape_type": "mask",
                "mask": _png_b64(patch),
            },
            {"label": "axon", "points": [[0, 0], [10, 10]], "shape_type": "line"},
        ],
    }
    (folder / "a.json").write_text(json.dumps(labelme))
    (folder / "escape.json").write_text(json.dumps({**labelme, "imagePath": "../outside.png"}))
    assert main(["import", str(folder), str(folder)]) == 0  # the folder of labelme files
    report = capsys.readouterr().out
    assert "'line' shape has no area" in report and "outside the images folder" in report
    out = tmp_path / "lm.json"
    assert main(["export", str(folder), "--out", str(out)]) == 0
    exported = COCO(str(out))
    got = _masks(exported)
    names = {c["name"]: c["id"] for c in exported.loadCats(exported.getCatIds())}

    def pil(draw_fn) -> bytes:
        canvas = Image.new("1", (W, H), 0)
        draw_fn(ImageDraw.Draw(canvas))
        return np.asarray(canvas, dtype=np.uint8).tobytes()

    polygon = pil(lambda d: d.polygon([(5, 5), (30, 5), (30, 25)], outline=1, fill=1))
    group = np.frombuffer(
        pil(lambda d: d.rectangle([40, 40, 60, 55], outline=1, fill=1)), np.uint8
    ) | np.frombuffer(pil(lambda d: d.ellipse([60, 5, 70, 15], outline=1, fill=1)), np.uint8)
    nucleus = np.zeros((H, W), np.uint8)
    nucleus[2:12, 50:62] = patch
    assert got[("a.png", names["cell"])] == sorted([polygon, group.tobytes()])
    assert got[("a.png", names["nucleus"])] == [nucleus.tobytes()]
    with ProjectStore.open(folder) as store:
        assert store.image_by_name("a.png").status is ImageStatus.CORRECTED


def test_our_training_command_trains_on_the_export(folder, truth, tmp_path):
    """The exported file is a training set as it is: `maskrcnn-core train` runs on it and writes a model
    whose classes are the export's, with their ids."""
    assert main(["import", str(folder), str(truth)]) == 0
    out = tmp_path / "export.json"
    assert main(["export", str(folder), "--out", str(out)]) == 0
    run = tmp_path / "run"
    # fmt: off
    command = [
        sys.executable, "-m", "maskrcnn_core", "train", "--train-json", str(out), "--images", str(folder),
        "--out", str(run), *TINY_CLI_FLAGS,
        "--iterations", "2", "--batch-size", "1", "--num-threads", "1", "--progress", "none",
    ]
    # fmt: on
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    import torch

    checkpoint = torch.load(run / "model_final.pt", weights_only=True)
    exported = json.loads(out.read_text())
    assert checkpoint["category_ids"] == sorted(c["id"] for c in exported["categories"])
    assert checkpoint["metadata"]["num_train_images"] == len(exported["images"])
