"""Instance label images (0 background, 1..N instances, 16-bit) out of a real project and back: the round
trip is pixel-exact, the files open in other readers (Pillow and OpenCV; scikit-image is not in the test
environment) with the right ids, and bad label images are report lines that lose nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.project.coco_io import import_annotations, import_coco
from app.project.label_image_io import CLASS_TABLE, export_label_images, import_label_images
from app.project.records import NewInstance, Provenance
from app.project.store import ProjectStore
from maskrcnn_core.masks import mask_to_rle, rle_to_mask
from maskrcnn_core.types import CroppedMask

H, W = 50, 70
NAMES = ("a.png", "b.jpg", "c.png")


def _full(rle: dict) -> np.ndarray:
    m = rle_to_mask(rle)
    full = np.zeros(m.image_size, bool)
    x0, y0, x1, y1 = m.crop_box
    full[y0:y1, x0:x1] = m.mask
    return full


def _rle(full: np.ndarray) -> dict:
    return mask_to_rle(CroppedMask.from_full(full.astype(bool)))


def _shape(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


RING = _shape(5, 40, 30, 65) & ~_shape(15, 30, 40, 55)  # a hole: label images keep it
TWO_PARTS = _shape(2, 8, 2, 8) | _shape(40, 48, 2, 20)
ON = {
    "a.png": [(_shape(5, 20, 5, 25), "cell"), (RING, "nucleus")],
    "b.jpg": [(TWO_PARTS, "cell")],
}


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
    images = [{"id": i + 1, "file_name": n, "height": H, "width": W} for i, n in enumerate(ON)]
    cats = {"cell": 1, "nucleus": 2}
    annotations = [
        {
            "id": 10 * (i + 1) + k,
            "image_id": i + 1,
            "category_id": cats[c],
            "segmentation": _rle(m),
            "iscrowd": 0,
        }
        for i, masks in enumerate(ON.values())
        for k, (m, c) in enumerate(masks)
    ]
    coco = tmp_path / "in.json"
    coco.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": v, "name": k} for k, v in cats.items()],
            }
        )
    )
    with ProjectStore.open(folder) as store:
        import_coco(store, coco)
    return folder


def _fresh(project: Path, to: Path) -> Path:
    to.mkdir()
    for name in NAMES:
        shutil.copy(project / name, to / name)
    return to


def _instances(store: ProjectStore, file_name: str) -> list[tuple[str, np.ndarray]]:
    names = {c.id: c.name for c in store.categories()}
    image = store.image_by_name(file_name)
    assert image is not None
    return [(names[r.category_id], _full(r.rle)) for r in store.instances(image.id)]


def test_export_writes_16_bit_label_images_others_read_with_the_right_ids(project, tmp_path):
    out = tmp_path / "labels"
    with ProjectStore.open(project) as store:
        summary = export_label_images(store, out)
    assert summary.images == 2 and summary.instances == 3
    with Image.open(out / "a.png") as im:
        assert im.mode == "I;16" and im.size == (W, H)
    read = cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED)
    assert read.dtype == np.uint16 and read.shape == (H, W)
    assert sorted(np.unique(read).tolist()) == [0, 1, 2]
    assert np.array_equal(read == 1, ON["a.png"][0][0]) and np.array_equal(read == 2, RING)
    assert read[20, 45] == 0  # the ring's hole is background
    assert np.array_equal(cv2.imread(str(out / "b.png"), cv2.IMREAD_UNCHANGED) == 1, TWO_PARTS)
    with open(out / CLASS_TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"image": "a.png", "label": "1", "category": "cell"},
        {"image": "a.png", "label": "2", "category": "nucleus"},
        {"image": "b.png", "label": "1", "category": "cell"},
    ]


@pytest.mark.parametrize("fmt", ["label-png", "label-tif"])
def test_round_trip_is_pixel_exact(project, tmp_path, fmt, capsys):
    out = tmp_path / "labels"
    assert main(["export", str(project), "--out", str(out), "--format", fmt]) == 0
    assert "wrote 3 instances in 2 label images" in capsys.readouterr().out
    fresh = _fresh(project, tmp_path / "fresh")
    with ProjectStore.open(fresh) as store:
        summary = import_annotations(store, out)  # recognised by its class table
        assert summary.images == 2 and summary.added == 3
        for name, expected in ON.items():
            got = _instances(store, name)
            assert [c for c, _ in got] == [c for _, c in expected]
            for (_, mask), (original, _) in zip(got, expected, strict=True):
                assert np.array_equal(mask, original)
        assert import_label_images(store, out).duplicates == 3  # re-importing adds nothing


def test_one_category_for_all_and_a_class_table_given_explicitly(project, tmp_path):
    out = tmp_path / "labels"
    with ProjectStore.open(project) as store:
        export_label_images(store, out)
    table = tmp_path / "classes.csv"
    table.write_text("image,label,category\n*,1,first\n*,2,second\n")
    (out / CLASS_TABLE).unlink()
    fresh = _fresh(project, tmp_path / "fresh")
    with ProjectStore.open(fresh) as store:
        with pytest.raises(ValueError, match="--category NAME"):
            import_label_images(store, out)
        import_label_images(store, out, class_table=table)
        assert [c for c, _ in _instances(store, "a.png")] == ["first", "second"]
    other = _fresh(project, tmp_path / "other")
    with ProjectStore.open(other) as store:
        import_label_images(store, out, category="blob")
        assert {c for c, _ in _instances(store, "a.png") + _instances(store, "b.jpg")} == {"blob"}


def test_bad_label_images_are_report_lines_and_lose_nothing(project, tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    labels = np.zeros((H, W), np.uint16)
    labels[1:5, 1:5] = 3
    Image.fromarray(labels).save(out / "a.png")  # label 3 has no class
    Image.fromarray(np.zeros((H + 1, W), np.uint16)).save(out / "b.png")  # another size than b.jpg
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(out / "c.png")  # a colour image
    Image.fromarray(labels).save(out / "zz.png")  # no such image
    (out / CLASS_TABLE).write_text("image,label,category\na.png,1,cell\n")
    with ProjectStore.open(project) as store:
        before = {n: _instances(store, n) for n in ON}
        image = store.image_by_name("a.png")
        store.apply_edit(
            image.id,
            add=[NewInstance(1, _rle(_shape(44, 48, 60, 66)), (60, 44, 66, 48), 24, Provenance.EDITED)],
        )
        summary = import_label_images(store, out)
        assert "a.png: label 3 has no class in the class table" in summary.report
        assert "b.png: 51x70 (HxW), but its image b.jpg is 50x70" in summary.report
        assert "c.png: a RGB image, not a one-channel label image" in summary.report
        assert "zz.png: no single image named 'zz'" in summary.report
        after = _instances(store, "a.png")
        assert len(after) == len(before["a.png"]) + 1  # the person's new instance and the old ones kept
        kept = _instances(store, "b.jpg")  # its label image was skipped: untouched
        assert [c for c, _ in kept] == [c for c, _ in before["b.jpg"]]
        assert all(np.array_equal(m, o) for (_, m), (_, o) in zip(kept, before["b.jpg"], strict=True))
    (out / CLASS_TABLE).write_text("image,label,category\na.png,x,cell\n")
    with ProjectStore.open(project) as store:
        with pytest.raises(ValueError, match="line 2: label 'x' is not a number"):
            import_label_images(store, out)
