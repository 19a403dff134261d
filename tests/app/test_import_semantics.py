"""What an annotation file says is kept through import and export: images listed with no objects are
negatives (verified, exported as image entries with no annotations), crowd regions (COCO ``iscrowd: 1``,
labelme ``__ignore__``) are kept, exported as ``iscrowd: 1`` RLE and left out of training, and labelme's
``_background_`` is not a category. Real SQLite projects; pycocotools judges the exported files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from app.project.coco_io import export_coco, import_annotations, import_coco
from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.store import DB_NAME, MIGRATIONS, ProjectStore
from app.project.training_set import build_training_set
from app.project.truth import annotations_of, crowd_regions_of
from app.session.document import Document
from app.session.overlay import CROWD_COLOR, build_overlays

H, W = 48, 64
NAMES = ("a.png", "b.png", "c.png", "d.png")


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _rle(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _coco_with_negatives(path: Path) -> Path:
    """a.png holds a cat; b.png, c.png and d.png are listed with no annotations (negatives)."""
    images = [{"id": i + 1, "file_name": n, "height": H, "width": W} for i, n in enumerate(NAMES)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 5, "segmentation": _rle(_box(4, 4, 20, 20)), "iscrowd": 0}
    ]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 5, "name": "cat"}]})
    )
    return path


def _predict(store: ProjectStore, file_name: str) -> None:
    image = store.image_by_name(file_name)
    mask = _box(30, 10, 40, 30)
    store.apply_prediction(
        image.id,
        expected_revision=image.revision,
        instances=[_new(store, mask, Provenance.PREDICTED, score=0.9)],
        model_version_id=None,
        image_size=(H, W),
    )


def _new(
    store: ProjectStore, mask: np.ndarray, provenance: Provenance, score: float | None = None
) -> NewInstance:
    (cat,) = [c.id for c in store.categories() if c.name == "cat"]
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return NewInstance(cat, _rle(mask), box, int(mask.sum()), provenance, score=score)


def test_coco_negatives_are_verified_and_round_trip(folder, tmp_path):
    source = _coco_with_negatives(tmp_path / "source.json")
    with ProjectStore.open(folder) as store:
        store.ensure_categories(["cat"], preferred_ids={"cat": 5})
        store.add_images(NAMES)
        _predict(store, "c.png")  # an untouched prediction on an image the file calls negative
        (persons,) = store.apply_edit(
            store.image_by_name("d.png").id, add=[_new(store, _box(1, 1, 9, 9), Provenance.EDITED)]
        )

        summary = import_coco(store, source)
        assert (summary.negatives, summary.conflicts, summary.replaced) == (2, 1, 1)
        assert "2 images with no objects verified as negatives" in summary.headline()
        status = {im.file_name: im.status for im in store.images()}
        assert status == {
            "a.png": ImageStatus.CORRECTED,
            "b.png": ImageStatus.VERIFIED,
            "c.png": ImageStatus.VERIFIED,
            "d.png": ImageStatus.CORRECTED,  # a person's instance contradicts the file: kept, not verified
        }
        assert store.instances(store.image_by_name("c.png").id) == []  # the prediction is gone
        assert [r.id for r in store.instances(store.image_by_name("d.png").id)] == [persons]
        again = import_coco(store, source)  # re-importing changes nothing
        assert (again.added, again.replaced, again.negatives, again.conflicts) == (0, 0, 2, 1)

        exported = tmp_path / "export.json"
        export_coco(store, exported)
    coco = COCO(str(exported))
    by_name = {im["file_name"]: im["id"] for im in coco.dataset["images"]}
    assert set(by_name) == set(NAMES)
    assert coco.getAnnIds(imgIds=[by_name["b.png"]]) == [] and coco.getAnnIds(imgIds=[by_name["c.png"]]) == []

    # The exported file, imported into a fresh project of the same folder, states the same negatives.
    with ProjectStore.open(folder, project_dir=tmp_path / "second") as second:
        assert import_coco(second, exported).negatives == 2
        verified = {im.file_name for im in second.images() if im.status is ImageStatus.VERIFIED}
        assert {"b.png", "c.png"} <= verified


def _labelme(folder: Path, name: str, shapes: list[dict]) -> None:
    data = {"imagePath": name, "imageHeight": H, "imageWidth": W, "shapes": shapes, "version": "5.4.1"}
    (folder / f"{Path(name).stem}.json").write_text(json.dumps(data))


def _rect(label: str, x0: int, y0: int, x1: int, y1: int) -> dict:
    return {"label": label, "points": [[x0, y0], [x1, y1]], "shape_type": "rectangle", "group_id": None}


def test_labelme_ignore_is_a_crowd_region_and_background_no_category(qapp, folder, tmp_path):
    _labelme(
        folder,
        "b.png",
        [
            _rect("cat", 2, 2, 20, 20),
            _rect("__ignore__", 30, 5, 60, 40),
            _rect("_background_", 0, 0, 63, 47),
        ],
    )
    _labelme(folder, "a.png", [_rect("cat", 10, 10, 30, 30)])
    _labelme(folder, "c.png", [_rect("_background_", 0, 0, 63, 47)])  # nothing but background: negative
    with ProjectStore.open(folder) as store:
        summary = import_annotations(store, folder)
        assert [c.name for c in store.categories()] == ["cat"]
        assert (summary.added, summary.crowd_regions, summary.negatives) == (3, 1, 1)
        assert "_background_ shapes (the background is not a class)" in summary.report
        b = store.instances(store.image_by_name("b.png").id)
        (crowd,) = crowd_regions_of(b)
        assert crowd.box == (30.0, 5.0, 61.0, 41.0)  # labelme fills the outline too
        assert len(annotations_of(b, 0.5)) == 1  # a crowd region is not an object instance
        assert store.image_by_name("c.png").status is ImageStatus.VERIFIED
        # The canvas draws it apart from the objects: the crowd colour, flagged for its outline and caption.
        overlays = build_overlays(b, {c.id: c for c in store.categories()})
        assert [(o.crowd, o.color == CROWD_COLOR) for o in overlays] == [(False, False), (True, True)]
        shown = Document(store).visible_instances(crowd.image_id)
        assert [r.id for r in shown] == [r.id for r in b]  # the window shows the crowd region too

        exported = tmp_path / "export.json"
        export_coco(store, exported, segmentation="polygon")
        training = build_training_set(store, tmp_path / "training", val_fraction=0.5)

    coco = COCO(str(exported))
    (crowd_ann,) = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert isinstance(crowd_ann["segmentation"], dict)  # RLE even in a polygon export
    assert int(coco.annToMask(crowd_ann).sum()) == 31 * 36
    # pycocotools treats it as an ignore region: a detection inside it is neither a hit nor a false one.
    gt = [a for a in coco.dataset["annotations"] if not a["iscrowd"]]
    detections = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": coco.annToRLE(a),
            "score": 0.5,
        }
        for a in gt
    ] + [
        {
            "image_id": crowd_ann["image_id"],
            "category_id": crowd_ann["category_id"],
            "segmentation": mask_utils.encode(np.asfortranarray(_box(35, 10, 50, 30))),
            "score": 0.99,  # ranked first: were it a false detection, AP would drop
        }
    ]
    evaluation = COCOeval(coco, coco.loadRes(detections), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)

    # Never trained on; the validation file keeps it (iscrowd 1) so the evaluation ignores it there.
    train, val = (json.loads(p.read_text()) for p in (training.train_json, training.val_json))
    assert not any(a["iscrowd"] for a in train["annotations"])
    assert training.train_images == ("a.png",) and "b.png" in training.val_images
    assert [a["iscrowd"] for a in val["annotations"]].count(1) == 1
    assert sum(not a["iscrowd"] for d in (train, val) for a in d["annotations"]) == 2


def test_a_project_written_before_crowd_regions_opens(folder, tmp_path):
    """The crowd flag is a column of the first schema: a project written by an older version (created here
    by its own SQL) opens unchanged, and a crowd row in it is read as a crowd region."""
    project_dir = tmp_path / "old"
    project_dir.mkdir()
    db = sqlite3.connect(project_dir / DB_NAME)
    version, _, sql = MIGRATIONS[0]
    db.executescript(sql)
    db.execute(f"PRAGMA user_version = {version:d}")
    now = "2026-01-01T00:00:00.000+00:00"
    db.execute(
        "INSERT INTO images (file_name, status, added_at, updated_at) VALUES ('a.png', 'verified', ?, ?)",
        (now, now),
    )
    db.execute("INSERT INTO categories (id, name, color) VALUES (5, 'cat', '#4e79a7')")
    rle = _rle(_box(4, 4, 20, 20))
    db.execute(
        "INSERT INTO instances (image_id, category_id, rle_counts, rle_height, rle_width, "
        "x1, y1, x2, y2, area, provenance, iscrowd, created_at, updated_at) "
        "VALUES (1, 5, ?, ?, ?, 4, 4, 20, 20, 256, 'imported', 1, ?, ?)",
        (rle["counts"], H, W, now, now),
    )
    db.commit()
    db.close()
    with ProjectStore.open(folder, project_dir=project_dir) as store:
        (record,) = store.instances()
        assert (
            record.iscrowd and crowd_regions_of([record]) == [record] and annotations_of([record], 0.0) == []
        )
