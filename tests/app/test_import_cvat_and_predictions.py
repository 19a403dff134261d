"""Two imports from other tools: CVAT's COCO (every brush mask an ``iscrowd: 1`` RLE) and a COCO results
file of predictions made elsewhere (a real ``maskrcnn-core predict`` run of the bundled demo model), stored
by the auto-segmentation rule. Real SQLite projects, real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.project.coco_io import CROWD_AS_INSTANCES_FLAG, import_annotations, is_cvat_crowd_file
from app.project.model_sources import bundled_demo_model
from app.project.predictions_io import RESULTS_FILE_ARCH, import_predictions
from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.store import ProjectStore
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.types import CroppedMask

H, W = 40, 50


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """RLE with a list of counts, column-major, as CVAT writes its brush masks."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": [H, W], "counts": counts}


def _cvat_file(tmp_path: Path, *, every_crowd: bool = True) -> Path:
    masks = []
    for x0 in (5, 25):
        m = np.zeros((H, W), bool)
        m[10:30, x0 : x0 + 15] = True
        masks.append(m)
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": _uncompressed_rle(m),
            "area": float(m.sum()),
            "bbox": [float(np.flatnonzero(m.any(0))[0]), 10.0, 15.0, 20.0],
            "iscrowd": 1 if every_crowd or i == 0 else 0,
            "attributes": {"occluded": False},
        }
        for i, m in enumerate(masks)
    ]
    data = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "version": "", "year": ""},
        "categories": [{"id": 1, "name": "leaf", "supercategory": ""}],
        "images": [{"id": 1, "width": W, "height": H, "file_name": "p.png", "license": 0}],
        "annotations": annotations,
    }
    path = tmp_path / "cvat.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(folder / "p.png")
    return folder


def test_cvat_brush_masks_import_as_crowd_regions_without_the_flag_and_instances_with_it(photos, tmp_path):
    cvat = _cvat_file(tmp_path)
    assert is_cvat_crowd_file(json.loads(cvat.read_text()))
    assert not is_cvat_crowd_file(json.loads(_cvat_file(tmp_path / "..", every_crowd=False).read_text()))
    with ProjectStore.open(photos) as store:
        summary = import_annotations(store, cvat)
        assert summary.crowd_regions == 2
        assert "as CVAT writes brush masks: imported as crowd regions" in summary.report
        assert CROWD_AS_INSTANCES_FLAG in summary.report
        assert all(r.iscrowd for r in store.instances())
    other = tmp_path / "other"
    shutil.copytree(photos, other, ignore=shutil.ignore_patterns(".*"))
    with ProjectStore.open(other) as store:
        summary = import_annotations(store, cvat, crowd_as_instances=True)
        assert summary.added == 2 and summary.crowd_regions == 0
        assert f"imported as instances ({CROWD_AS_INSTANCES_FLAG})" in summary.report
        instances = store.instances()
        assert [r.iscrowd for r in instances] == [False, False]
        assert sorted(r.area for r in instances) == [300, 300]


def test_cvat_flag_on_the_command_line(photos, tmp_path, capsys):
    assert main(["import", str(photos), str(_cvat_file(tmp_path)), CROWD_AS_INSTANCES_FLAG]) == 0
    out = capsys.readouterr().out
    assert "imported 2 annotations on 1 images" in out and "imported as instances" in out


# ------------------------------------------------------------------------------------------- predictions
@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Three synthetic images, their COCO file, and the results of the demo model's real predict run."""
    from maskrcnn_core.cli import main as core_main
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("predicted")
    coco = generate_synthetic_dataset(root, num_images=3, seed=3)
    results = root / "results.json"
    demo = bundled_demo_model()
    assert demo is not None
    args = ["predict", "--weights", str(demo), "--images", str(root / "images"), "--out", str(results)]
    assert core_main([*args, "--device", "cpu", "--progress", "none", "--num-threads", "1"]) == 0
    return root / "images", coco, results


@pytest.fixture
def folder(predicted, tmp_path) -> Path:
    folder = tmp_path / "images"
    shutil.copytree(predicted[0], folder)
    return folder


def test_results_file_loads_as_predictions_and_leaves_a_persons_images_alone(predicted, folder):
    _, coco, results = predicted
    detections = json.loads(results.read_text())
    by_file: dict[str, list[dict]] = {}
    for d in detections:
        by_file.setdefault(d["file_name"], []).append(d)
    names = sorted(by_file)
    assert len(names) == 3, "the demo model finds objects on every synthetic image"
    with ProjectStore.open(folder) as store:
        store.ensure_categories(["mine"])
        store.add_images(names)
        person = np.zeros((192, 256), bool)
        person[5:20, 5:20] = True
        rle = mask_to_rle(CroppedMask.from_full(person))
        verified, corrected, new = (store.image_by_name(n) for n in names)
        store.apply_edit(verified.id, add=[NewInstance(1, rle, (5, 5, 20, 20), 225, Provenance.EDITED)])
        store.set_verified(verified.id, True)
        store.apply_edit(corrected.id, add=[NewInstance(1, rle, (5, 5, 20, 20), 225, Provenance.EDITED)])
        before = {i: store.instances(i) for i in (verified.id, corrected.id)}
        summary = import_predictions(store, results, model_name="demo on the cluster", image_list=coco)
        assert summary.images == 1 and summary.left_alone == 2
        assert {i: store.instances(i) for i in before} == before
        stored = store.instances(new.id)
        assert store.image(new.id).status is ImageStatus.PREDICTED
        assert sorted(r.score for r in stored) == pytest.approx(sorted(d["score"] for d in by_file[names[2]]))
        assert all(r.provenance is Provenance.PREDICTED for r in stored)
        version = next(v for v in store.model_versions() if v.id == summary.model_version_id)
        assert version.name == "demo on the cluster" and version.arch == RESULTS_FILE_ARCH
        assert {r.model_version_id for r in stored} == {version.id}
        category_names = {c["id"]: c["name"] for c in json.loads(coco.read_text())["categories"]}
        project_names = {c.id: c.name for c in store.categories()}
        assert {project_names[r.category_id] for r in stored} <= set(category_names.values())
        again = import_predictions(store, results, model_name="demo on the cluster", image_list=coco)
        assert again.detections == summary.detections
        assert len(store.instances(new.id)) == len(stored)  # replaced, not doubled


def test_predictions_on_the_command_line(predicted, folder, capsys):
    _, coco, results = predicted
    args = ["import", "--predictions", str(folder), str(results), "--image-list", str(coco)]
    assert main([*args, "--model", "demo"]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "predictions on 3 images" in out and "left 0 corrected" in out


def test_bad_results_are_report_lines_or_one_line_errors(predicted, folder, tmp_path, capsys):
    _, coco, results = predicted
    detections = json.loads(results.read_text())
    good = [d for d in detections if d["file_name"] == detections[0]["file_name"]]
    bad = [
        {k: v for k, v in good[0].items() if k != "file_name"} | {"image_id": 999},  # unknown image id
        good[0] | {"category_id": 77},  # unknown category
        good[0] | {"score": "high"},  # not a score
        good[0] | {"segmentation": {"size": [10, 10], "counts": [100]}},  # another size than the image
        good[0] | {"file_name": "../outside.png"},  # outside the folder
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(good + bad))
    with ProjectStore.open(folder) as store:
        summary = import_predictions(store, path, image_list=coco)
        report = summary.report
        assert "image id 999 is not named in the image list" in report
        assert "category id 77 is not named" in report
        assert "bad score: 'high'" in report
        assert "bad mask: RLE size [10, 10]" in report
        assert "../outside.png: not in" in report
        assert summary.images == 1 and summary.detections <= len(good)
    path.write_text(json.dumps({"images": []}))
    assert main(["import", "--predictions", str(folder), str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a COCO results file" in err
