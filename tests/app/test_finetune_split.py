"""The fine-tuning set: a deterministic split, what counts as truth, class ids per model, the comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from app.project.coco_io import import_coco
from app.project.comparison import compare
from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.store import ProjectStore
from app.project.training_set import (
    TrainingSetError,
    build_training_set,
    ground_truth_for_model,
    split_images,
    split_key,
)


def test_split_is_a_function_of_the_name_and_stable_when_images_are_added():
    names = [f"img_{i:03d}.png" for i in range(200)]
    train, val = split_images(names, 0.2)
    assert sorted(train + val) == sorted(names) and not set(train) & set(val)
    assert 0.12 < len(val) / len(names) < 0.28  # a hash, so about the share asked for
    assert split_images(list(reversed(names)), 0.2) == (train, val)
    train2, val2 = split_images([*names, *(f"new_{i}.png" for i in range(50))], 0.2)
    assert set(val) <= set(val2) and set(train) <= set(train2)  # old images keep their side
    assert all(split_key(n) < 0.2 for n in val)


@pytest.mark.parametrize("count", [2, 3, 5])
def test_small_sets_always_have_both_sides(count):
    for offset in range(20):
        names = [f"x{offset}_{i}.png" for i in range(count)]
        train, val = split_images(names, 0.2)
        assert train and val and len(train) + len(val) == count


def test_split_refuses_a_share_outside_zero_one():
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_images(["a.png", "b.png"], 1.0)


@pytest.fixture
def project(images_folder, synthetic_dataset):
    """The synthetic folder with its truth imported (corrected), 2 verified, 1 left new, 1 predicted."""
    store = ProjectStore.open(images_folder)
    store.add_images(sorted(p.name for p in images_folder.glob("*.png")))
    truth = json.loads(synthetic_dataset.read_text())
    keep = [im for im in truth["images"] if im["file_name"] not in ("train_000004.png", "train_000005.png")]
    kept_ids = {im["id"] for im in keep}
    annotations = [a for a in truth["annotations"] if a["image_id"] in kept_ids]
    part = dict(truth, images=keep, annotations=annotations)
    (images_folder.parent / "part.json").write_text(json.dumps(part))
    import_coco(store, images_folder.parent / "part.json")
    for name in ("train_000000.png", "train_000001.png"):
        store.set_verified(store.image_by_name(name).id, True)
    predicted = store.image_by_name("train_000005.png")
    rle = mask_utils.encode(np.asfortranarray(np.ones((10, 10), dtype=np.uint8)))
    rle = {"size": [10, 10], "counts": rle["counts"].decode()}
    circle = store.ensure_categories(["circle"])["circle"]
    store.apply_prediction(
        predicted.id,
        expected_revision=0,
        instances=[NewInstance(circle, rle, (0, 0, 10, 10), 100, Provenance.PREDICTED, score=0.9)],
        model_version_id=None,
        image_size=(10, 10),
    )
    yield store
    store.close()


def test_the_training_set_holds_the_checked_images_and_their_truth(project, tmp_path, synthetic_dataset):
    ts = build_training_set(project, tmp_path / "run")
    names = sorted(ts.train_images + ts.val_images)
    assert names == [f"train_00000{i}.png" for i in range(4)]  # not the new one, not the predicted one
    assert (list(ts.train_images), list(ts.val_images)) == split_images(names, 0.2)
    truth = COCO(str(synthetic_dataset))
    truth_id = {i["file_name"]: i["id"] for i in truth.loadImgs(truth.getImgIds())}
    for path in (ts.train_json, ts.val_json):
        written = COCO(str(path))  # pycocotools reads what we wrote
        for image in written.loadImgs(written.getImgIds()):
            ours = [written.annToRLE(a) for a in written.loadAnns(written.getAnnIds(imgIds=[image["id"]]))]
            true_ids = truth.getAnnIds(imgIds=[truth_id[image["file_name"]]])
            theirs = [truth.annToRLE(a) for a in truth.loadAnns(true_ids)]
            assert len(ours) == len(theirs)
            ious = mask_utils.iou(ours, theirs, [0] * len(theirs))
            assert np.allclose(ious.max(axis=1), 1.0)  # every mask is exactly a true one
    assert {n for _, n in ts.categories} <= {"circle", "square", "triangle", "ring"}


def test_only_verified_images_when_asked(project, tmp_path):
    ts = build_training_set(project, tmp_path / "run", statuses=(ImageStatus.VERIFIED,))
    assert sorted(ts.train_images + ts.val_images) == ["train_000000.png", "train_000001.png"]


def test_predictions_below_the_threshold_are_not_truth(project, tmp_path):
    image = project.image_by_name("train_000002.png")
    before = len(project.instances(image.id))
    square = project.ensure_categories(["square"])["square"]
    rle = mask_utils.encode(np.asfortranarray(np.ones((192, 256), dtype=np.uint8)))
    rle = {"size": [192, 256], "counts": rle["counts"].decode()}
    low = NewInstance(square, rle, (0, 0, 256, 192), 192 * 256, Provenance.PREDICTED, score=0.2)
    project.apply_prediction(
        image.id, expected_revision=image.revision, instances=[low], model_version_id=None, image_size=(1, 1)
    )
    ts = build_training_set(project, tmp_path / "run", score_threshold=0.5)
    written = COCO(str(ts.train_json if "train_000002.png" in ts.train_images else ts.val_json))
    ids = [i["id"] for i in written.loadImgs(written.getImgIds()) if i["file_name"] == "train_000002.png"]
    assert len(written.getAnnIds(imgIds=ids)) == before


def test_too_few_images_is_a_clear_error_and_writes_nothing(tmp_path, images_folder):
    store = ProjectStore.open(images_folder)
    store.add_images(["train_000000.png"])
    with pytest.raises(TrainingSetError, match="at least 2 corrected or verified images"):
        build_training_set(store, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    store.close()


def test_ground_truth_is_renumbered_to_the_models_class_ids(project, tmp_path):
    ts = build_training_set(project, tmp_path / "run")
    model = [(11, "square"), (12, "circle")]  # a model numbering its classes its own way, no triangle
    out = ground_truth_for_model(ts.val_json, model, tmp_path / "gt_for_model.json")
    original, renumbered = json.loads(ts.val_json.read_text()), json.loads(out.read_text())
    name_of = {c["id"]: c["name"] for c in original["categories"]}
    new_id = {c["name"]: c["id"] for c in renumbered["categories"]}
    assert new_id.get("square", 11) == 11 and new_id.get("circle", 12) == 12
    assert all(i > 12 for n, i in new_id.items() if n not in ("square", "circle"))
    for before, after in zip(original["annotations"], renumbered["annotations"], strict=True):
        assert new_id[name_of[before["category_id"]]] == after["category_id"]
        assert before["segmentation"] == after["segmentation"]


def test_comparison_rows_and_verdict():
    def metrics(ap, per_class):
        entries = [{"category_id": i, "name": n, "ap": a} for i, (n, a) in enumerate(per_class.items())]
        return {"num_images": 3, "segm": {"ap": ap, "per_class_ap": entries}}

    result = compare("base", metrics(0.4, {"circle": 0.5, "star": 0.0}), "new", metrics(0.6, {"circle": 0.7}))
    assert [r.name for r in result.rows] == ["all classes", "circle", "star"]
    assert result.overall.delta == pytest.approx(0.2) and result.rows[2].new_ap is None
    assert result.new_is_better and result.num_images == 3
    assert not compare("base", metrics(0.6, {}), "new", metrics(0.6, {})).new_is_better
    unscored = compare("base", None, "new", metrics(0.1, {}), base_error="the evaluation crashed")
    assert unscored.new_is_better and unscored.overall.base_ap is None
