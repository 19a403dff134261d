"""YOLO segmentation datasets (Ultralytics' layout) out of a real project and back into another.

The written polygons are judged the way Ultralytics reads them: each label line scaled to pixels, cut to
whole pixels and filled with ``cv2.fillPoly`` (``ultralytics/data/utils.py``, ``polygon2mask``), done
here in the test on the files themselves (the ``ultralytics`` package is not a test dependency: it pulls
``opencv-python``, which would replace the headless ``cv2``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.project.coco_io import import_annotations, import_coco
from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.store import ProjectStore
from app.project.yolo_io import export_yolo, import_yolo, read_yolo_names
from maskrcnn_core.masks import mask_to_rle, rle_to_mask
from maskrcnn_core.types import CroppedMask

H, W = 60, 80
NAMES = ("a.png", "b.png", "c.png", "d.png")


def _full(rle: dict) -> np.ndarray:
    m = rle_to_mask(rle)
    full = np.zeros(m.image_size, bool)
    x0, y0, x1, y1 = m.crop_box
    full[y0:y1, x0:x1] = m.mask
    return full


def _rle(full: np.ndarray) -> dict:
    return mask_to_rle(CroppedMask.from_full(full.astype(bool)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


MASKS = {
    # a.png: a rectangle and a disc of two categories
    "rect": (np.pad(np.ones((20, 30), bool), ((5, H - 25), (4, W - 34))), "cat"),
    "disc": (_disc(60, 40, 12), "dog"),
    # b.png: a ring (a hole) and an instance in two parts
    "ring": (_disc(25, 30, 15) & ~_disc(25, 30, 6), "cat"),
    "parts": (_disc(62, 12, 7) | _disc(65, 48, 8), "dog"),
}


@pytest.fixture
def project(tmp_path) -> Path:
    """A folder of four photos whose project holds the MASKS as imported annotations on a.png and b.png,
    and c.png verified as holding no objects."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
    on = {"a.png": ("rect", "disc"), "b.png": ("ring", "parts"), "c.png": ()}
    images = [{"id": i + 1, "file_name": n, "height": H, "width": W} for i, n in enumerate(on)]
    annotations = [
        {
            "id": 10 * (i + 1) + k,
            "image_id": i + 1,
            "category_id": 1 if MASKS[key][1] == "cat" else 2,
            "segmentation": _rle(MASKS[key][0]),
            "iscrowd": 0,
        }
        for i, keys in enumerate(on.values())
        for k, key in enumerate(keys)
    ]
    coco = tmp_path / "in.json"
    coco.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            }
        )
    )
    with ProjectStore.open(folder) as store:
        import_coco(store, coco)
    return folder


def _copy_photos(project: Path, to: Path) -> Path:
    to.mkdir()
    for name in NAMES:
        shutil.copy(project / name, to / name)
    return to


def _masks(store: ProjectStore, file_name: str) -> list[tuple[str, np.ndarray]]:
    image = store.image_by_name(file_name)
    assert image is not None
    names = {c.id: c.name for c in store.categories()}
    return [(names[r.category_id], _full(r.rle)) for r in store.instances(image.id)]


def _read_like_ultralytics(label_file: Path, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """Ultralytics' reading of a label file: each line's normalised polygon times (w, h), cast to int32,
    filled with cv2.fillPoly on an image-size canvas."""
    height, width = size
    read = []
    for line in label_file.read_text().splitlines():
        values = line.split()
        polygon = (np.array(values[1:], dtype=np.float32).reshape(-1, 2) * np.array([width, height])).astype(
            np.int32
        )
        canvas = np.zeros(size, np.uint8)
        cv2.fillPoly(canvas, [polygon], color=1)
        read.append((int(values[0]), canvas.astype(bool)))
    return read


def test_export_writes_ultralytics_layout_and_polygons_read_back_as_the_masks(project, tmp_path):
    out = tmp_path / "yolo"
    with ProjectStore.open(project) as store:
        summary = export_yolo(store, out)
    assert summary.train_images == 3 and summary.val_images == 0 and summary.instances == 4
    assert any("holes" in note for note in summary.notes)
    assert any("one-pixel seam" in note for note in summary.notes)
    assert read_yolo_names(out / "data.yaml") == ["cat", "dog"]
    yaml = (out / "data.yaml").read_text()
    assert "train: images/train" in yaml and "val: images/train" in yaml
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["a.png", "b.png", "c.png"]
    assert (out / "labels" / "train" / "c.txt").read_text() == ""  # verified with no objects: a background
    for name, keys in {"a": ("rect", "disc"), "b": ("ring", "parts")}.items():
        read = _read_like_ultralytics(out / "labels" / "train" / f"{name}.txt", (H, W))
        assert [c for c, _ in read] == [0 if MASKS[k][1] == "cat" else 1 for k in keys]
        for (_, mask), key in zip(read, keys, strict=True):
            original = MASKS[key][0]
            if key == "ring":  # the hole is lost: the outline is filled
                filled = original | _disc(25, 30, 6)
                assert _iou(mask, filled) >= 0.95
                assert mask[30, 25]
            elif key == "parts":  # both parts, joined by a seam of a few pixels
                assert (mask & original).sum() == original.sum()
                assert _iou(mask, original) >= 0.9
            else:  # no hole, one part: the boundary pixels' centres give back every pixel
                assert np.array_equal(mask, original)


def test_round_trip_through_our_import_gives_the_same_instances(project, tmp_path):
    out = tmp_path / "yolo"
    with ProjectStore.open(project) as store:
        export_yolo(store, out, val_fraction=0.5)
        before = {n: _masks(store, n) for n in ("a.png", "b.png")}
    assert {p.name for p in (out / "images").iterdir()} == {"train", "val"}
    fresh = _copy_photos(project, tmp_path / "fresh")
    with ProjectStore.open(fresh) as store:
        imported = import_annotations(store, out)  # recognised as a YOLO folder
        assert imported.images == 3 and imported.added == 4 and imported.negatives == 1
        assert store.image_by_name("c.png").status is ImageStatus.VERIFIED
        for name, instances in before.items():
            after = _masks(store, name)
            assert [c for c, _ in after] == [c for c, _ in instances]
            for (_, a), (_, b) in zip(after, instances, strict=True):
                # no hole, one part: the same pixels; the ring's hole is filled, the two parts joined
                assert _iou(a, b) >= 0.95 if name == "a.png" else _iou(a, b) >= 0.8
            assert all(
                r.provenance is Provenance.IMPORTED for r in store.instances(store.image_by_name(name).id)
            )
        again = import_yolo(store, out)
        assert again.added == 0 and again.duplicates == 4  # re-importing changes nothing


def test_bad_label_lines_are_reported_and_nothing_in_the_project_is_lost(project, tmp_path):
    out = tmp_path / "yolo"
    with ProjectStore.open(project) as store:
        export_yolo(store, out)
    label = out / "labels" / "train" / "a.txt"
    good = label.read_text().splitlines()[0]
    label.write_text(
        "\n".join(
            [
                good,
                "0 0.1 0.1 0.5 abc 0.2 0.2",  # malformed
                "1 0.1 0.1",  # one point
                "7 0.1 0.1 0.5 0.1 0.5 0.5",  # class out of range
                "0 0.1 0.1 1.5 0.1 0.5 0.5",  # not normalised
                "0 0.5 0.5 0.2 0.2",  # a detection box
                "0 0.1 0.1 0.5",  # odd count
            ]
        )
        + "\n"
    )
    fresh = _copy_photos(project, tmp_path / "fresh")
    with ProjectStore.open(fresh) as store:
        store.ensure_categories(["cat"])
        store.add_images(["a.png"])
        image_id = store.image_by_name("a.png").id
        person = np.zeros((H, W), bool)
        person[50:58, 2:10] = True
        store.apply_edit(
            image_id,
            add=[NewInstance(1, _rle(person), (2.0, 50.0, 10.0, 58.0), int(person.sum()), Provenance.EDITED)],
        )
        summary = import_yolo(store, out)
        report = summary.report
        assert "a.txt line 2: not a class index and numbers" in report
        assert "line 3: a polygon needs at least 3 points, got 1" in report
        assert "line 4: class 7 is not in data.yaml's 2 names" in report
        assert "line 5: coordinates must be normalised" in report
        assert "line 6: a box (class cx cy w h)" in report
        assert "line 7: an odd number of coordinates" in report
        masks = _masks(store, "a.png")
        assert any(np.array_equal(m, person) for _, m in masks)  # the person's instance is kept
        assert len(masks) == 2  # and the one good line is imported


def test_bad_folders_are_one_line_errors(project, tmp_path, capsys):
    empty = tmp_path / "not-yolo"
    empty.mkdir()
    with ProjectStore.open(project) as store:
        with pytest.raises(ValueError, match="not a YOLO dataset folder"):
            import_yolo(store, empty)
        (empty / "x.txt").write_text("x")
        with pytest.raises(ValueError, match="not empty"):
            export_yolo(store, empty)
        with pytest.raises(ValueError, match="validation share"):
            export_yolo(store, tmp_path / "new", val_fraction=1.0)
    (empty / "labels").mkdir()
    (empty / "data.yaml").write_text("nc: 2\n")
    assert main(["import", str(project), str(empty)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no names" in err


def test_names_in_each_yaml_form(tmp_path):
    path = tmp_path / "data.yaml"
    for text in (
        "names: ['a b', \"c\", d]\n",
        "names:\n  - a b\n  - 'c'\n  - d # a comment\nnc: 3\n",
        'path: ../x\nnames:\n  0: a b\n  1: c\n  2: "d"\ntrain: images\n',
    ):
        path.write_text(text)
        assert read_yolo_names(path) == ["a b", "c", "d"]
    path.write_text("names:\n  0: a\n  2: b\n")
    with pytest.raises(ValueError, match="without gaps"):
        read_yolo_names(path)


def test_command_line_export_and_import(project, tmp_path, capsys):
    out = tmp_path / "yolo"
    assert main(["export", str(project), "--out", str(out), "--format", "yolo", "--val-fraction", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 4 instances" in printed and "note: 1 instances have holes" in printed
    fresh = _copy_photos(project, tmp_path / "fresh")
    assert main(["import", str(fresh), str(out)]) == 0
    assert "imported 4 annotations on 3 images" in capsys.readouterr().out


def test_two_images_with_one_stem_keep_the_first_and_say_so(project, tmp_path):
    from app.project.label_image_io import export_label_images

    shutil.copy(project / "a.png", project / "a.jpg")
    a = np.zeros((H, W), bool)
    a[2:9, 2:9] = True
    with ProjectStore.open(project) as store:
        store.add_images(["a.jpg"])
        store.ensure_categories(["cat"])
        image = store.image_by_name("a.jpg")
        store.apply_edit(image.id, add=[NewInstance(1, _rle(a), (2, 2, 9, 9), 49, Provenance.EDITED)])
        yolo = export_yolo(store, tmp_path / "yolo")
        labels = export_label_images(store, tmp_path / "labels")
    assert yolo.skipped_images == ["a.png: its label file would be a.txt, which a.jpg has"]
    assert labels.skipped_images == ["a.png: its label image would be a.png, which a.jpg has"]
    assert not (tmp_path / "yolo" / "images" / "train" / "a.png").exists()
