"""COCO reading, validation and writing, checked against pycocotools' own decoding of the same files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from maskrcnn_core.data.coco import (
    CocoAnnotation,
    CocoData,
    CocoImage,
    CocoValidationError,
    coco_dict,
    load_coco,
    predictions_to_coco_results,
    write_coco,
)
from maskrcnn_core.types import Category, CroppedMask, Prediction

REPO_ROOT = Path(__file__).resolve().parents[2]
H, W = 40, 60


def _png(path: Path, height: int = H, width: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a 0-run."""
    flat = mask.astype(np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _ring_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    r2 = (yy - 20) ** 2 + (xx - 30) ** 2
    return (r2 <= 12**2) & (r2 > 5**2)


def _write(tmp_path: Path, dataset: dict) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dataset))
    return path


def _valid_dataset(tmp_path: Path) -> dict:
    """Two images with polygons (one multi-part), compressed and uncompressed RLE, a ring, a crowd region."""
    for name in ("a.png", "sub/b.png"):
        _png(tmp_path / "images" / name)
    two_parts = np.zeros((H, W), bool)
    two_parts[2:8, 2:9] = two_parts[30:38, 40:55] = True
    crowd = np.zeros((H, W), bool)
    crowd[10:30, 0:10] = True
    return {
        "images": [
            {"id": 7, "file_name": "a.png", "height": H, "width": W},
            {"id": 9, "file_name": "sub/b.png", "height": H, "width": W},
        ],
        "categories": [{"id": 33, "name": "c"}, {"id": 11, "name": "a"}, {"id": 22, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 11, "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]],
             "bbox": [5, 5, 20, 15], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 22,
             "segmentation": [[30, 2, 40, 2, 35, 12], [45, 20, 58, 20, 58, 35, 45, 35]], "iscrowd": False},
            {"id": 3, "image_id": 9, "category_id": 33, "segmentation": _rle(_ring_mask()), "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 11, "segmentation": _uncompressed_rle(two_parts)},
            {"id": 5, "image_id": 9, "category_id": 22, "segmentation": _uncompressed_rle(crowd),
             "iscrowd": 1},
        ],
    }  # fmt: skip


def test_masks_match_pycocotools_for_polygons_rle_holes_parts_and_crowds(tmp_path: Path) -> None:
    dataset = _valid_dataset(tmp_path)
    path = _write(tmp_path, dataset)
    data, report = load_coco(path, tmp_path / "images")

    assert report.ok and report.issues == [], report.summary()
    reference = COCO(str(path))
    loaded = {ann.id: (image, ann) for image in data.images for ann in image.annotations}
    assert sorted(loaded) == [1, 2, 3, 4, 5]
    for ann_id, (image, ann) in loaded.items():
        expected = reference.annToMask(reference.anns[ann_id]).astype(bool)
        np.testing.assert_array_equal(ann.mask.to_full(), expected, err_msg=f"annotation {ann_id}")
        x, y, w, h = mask_utils.toBbox(reference.annToRLE(reference.anns[ann_id]))
        assert ann.bbox == (x, y, x + w, y + h)
        assert ann.area == expected.sum()
        assert ann.mask.image_size == (image.height, image.width)
    assert loaded[3][1].mask.to_full()[20, 30] == 0, "the ring's hole was filled"
    two_parts = loaded[4][1].mask.to_full()
    assert two_parts.sum() == 6 * 7 + 8 * 15
    assert cv2.connectedComponents(two_parts.astype(np.uint8))[0] == 3, "background + two parts"
    assert [ann.iscrowd for ann in (loaded[i][1] for i in range(1, 6))] == [False, False, False, False, True]
    assert data.images[1].path == (tmp_path / "images" / "sub" / "b.png").resolve()


def test_category_ids_map_to_contiguous_labels_and_back(tmp_path: Path) -> None:
    data, _ = load_coco(_write(tmp_path, _valid_dataset(tmp_path)), tmp_path / "images")

    assert data.categories == (Category(11, "a"), Category(22, "b"), Category(33, "c"))
    labels = {ann.category_id: ann.label for image in data.images for ann in image.annotations}
    assert labels == {11: 1, 22: 2, 33: 3}
    np.testing.assert_array_equal(data.category_id_to_label(np.array([33, 11, 22, 11])), [3, 1, 2, 1])
    np.testing.assert_array_equal(data.label_to_category_id(np.array([3, 1, 2])), [33, 11, 22])
    with pytest.raises(ValueError, match=r"unknown category ids \[12\]"):
        data.category_id_to_label(np.array([11, 12]))
    with pytest.raises(ValueError, match=r"labels must be in 1..3"):
        data.label_to_category_id(np.array([0, 4]))


def _broken_dataset(tmp_path: Path) -> dict:
    dataset = _valid_dataset(tmp_path)
    images_dir = tmp_path / "images"
    (images_dir / "garbage.png").write_bytes(b"not a png at all")
    _png(tmp_path / "outside.png")  # a real image, but outside images_dir: must never be read
    _png(images_dir / "small.png", H // 2, W)
    dataset["images"] += [
        {"id": 20, "file_name": "missing.png", "height": H, "width": W},
        {"id": 21, "file_name": "garbage.png", "height": H, "width": W},
        {"id": 22, "file_name": "../outside.png", "height": H, "width": W},
        {"id": 23, "file_name": str((tmp_path / "outside.png").resolve()), "height": H, "width": W},
        {"id": 24, "file_name": "small.png", "height": H, "width": W},
    ]
    square = [[10, 10, 20, 10, 20, 20, 10, 20]]
    dataset["annotations"] += [
        {"id": 30, "image_id": 20, "category_id": 11, "segmentation": square},  # on a missing image
        {"id": 31, "image_id": 99, "category_id": 11, "segmentation": square},
        {"id": 32, "image_id": 7, "category_id": 44, "segmentation": square},
        {"id": 1, "image_id": 7, "category_id": 11, "segmentation": square},  # duplicate id
        {"id": 33, "image_id": 7, "category_id": 11, "segmentation": [[1, 1, 5, 5]]},
        {"id": 34, "image_id": 7, "category_id": 11, "segmentation": [[1, 1, 5, 5, 9]]},
        {"id": 35, "image_id": 7, "category_id": 11, "segmentation": _rle(np.ones((H + 1, W), bool))},
        {"id": 36, "image_id": 7, "category_id": 11, "segmentation": [[-20, -20, -10, -20, -10, -10]]},
        {"id": 37, "image_id": 7, "category_id": 11, "segmentation": [[50, 30, 60, 30, 60, 40, 50, 40]],
         "bbox": [50, 30, 15, 15]},
        {"id": 38, "image_id": 7, "category_id": 11, "segmentation": square, "bbox": [0, 0, 5, 5]},
        {"id": 39, "image_id": 7, "category_id": 11, "segmentation": {"size": [H, W], "counts": "0z0"}},
        {"id": 40, "image_id": 7, "category_id": 11, "segmentation": square, "iscrowd": "yes"},
    ]  # fmt: skip
    return dataset


def test_validation_skips_and_names_each_offending_image_and_annotation(tmp_path: Path) -> None:
    data, report = load_coco(_write(tmp_path, _broken_dataset(tmp_path)), tmp_path / "images")

    assert report.ok
    assert sorted(image.id for image in data.images) == [7, 9]
    kept = sorted(ann.id for image in data.images for ann in image.annotations)
    assert kept == [1, 2, 3, 4, 5, 37, 38]
    assert data.images[0].annotations[0].mask.to_full().sum() == 15 * 20, "the duplicate replaced the first"

    skipped = {(i.image_id, i.annotation_id): i.message for i in report.skipped}
    expected = {
        (20, None): "image file missing",
        (21, None): "unreadable",
        (22, None): "outside the images folder",
        (23, None): "absolute path",
        (24, None): "20x60 (HxW) but the JSON says 40x60",
        (None, 31): "unknown image id 99",
        (7, 32): "unknown category id 44",
        (7, 1): "duplicate annotation id",
        (7, 33): "2 points; at least 3",
        (7, 34): "odd number of coordinates",
        (7, 35): "RLE size [41, 60] (H, W) does not match the image's [40, 60]",
        (7, 36): "empty mask",
        (7, 39): "characters outside pycocotools' alphabet",
        (7, 40): "iscrowd must be 0, 1",
    }
    assert set(skipped) == set(expected), report.summary()
    for key, fragment in expected.items():
        assert fragment in skipped[key], (key, skipped[key])
    assert "1 annotations dropped" in skipped[(20, None)]

    warnings = {i.annotation_id: i.message for i in report.warnings}
    assert set(warnings) == {37, 38}
    assert "outside the 60x40 image; clipped" in warnings[37]
    assert "disagrees with the mask's box" in warnings[38]
    by_id = {ann.id: ann for image in data.images for ann in image.annotations}
    assert by_id[37].bbox == (50.0, 30.0, 60.0, 40.0), "the mask's box must win"
    assert by_id[38].bbox == (10.0, 10.0, 20.0, 20.0), "the mask's box must win"

    summary = report.summary()
    assert "loaded 2 images and 7 annotations; skipped 5 images and 9 annotations; 2 warnings" in summary
    for (image_id, ann_id), _ in expected.items():
        if ann_id is not None:
            assert f"annotation {ann_id}" in summary
        if image_id is not None:
            assert f"image {image_id}" in summary


def test_short_compressed_rle_is_skipped_not_decoded_into_garbage(tmp_path: Path) -> None:
    # pycocotools decodes an RLE that covers too few pixels into uninitialised memory; it must be caught.
    dataset = _valid_dataset(tmp_path)
    short = mask_utils.frPyObjects({"size": [H, W], "counts": [5, 10]}, H, W)
    dataset["annotations"][0]["segmentation"] = {"size": [H, W], "counts": short["counts"].decode()}
    _, report = load_coco(_write(tmp_path, dataset), tmp_path / "images")
    assert [(i.annotation_id, i.message) for i in report.skipped] == [
        (1, f"RLE 'counts' cover 15 pixels, but its size [{H}, {W}] has {H * W}")
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not a JSON file"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"images": [], "annotations": []}).encode(), 'missing the "categories" list'),
        (json.dumps({"images": {}, "annotations": [], "categories": []}).encode(), '"images" must be a list'),
        (json.dumps({"images": [], "annotations": [], "categories": []}).encode(), "no categories"),
        (
            json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}, {"id": 1}]}).encode(),
            "duplicate category id 1",
        ),
        (
            json.dumps(
                {"images": [{"id": 3}, {"id": 3}], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
            ).encode(),
            "image 3: duplicate image id 3",
        ),
        (
            json.dumps(
                {"images": [{"file_name": "a.png"}], "annotations": [], "categories": [{"id": 1}]}
            ).encode(),
            "images[0] has no integer id",
        ),
    ],
)
def test_fatal_problems_raise_with_the_report(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "ann.json"
    path.write_bytes(content)
    with pytest.raises(CocoValidationError, match="cannot be loaded") as info:
        load_coco(path, tmp_path)
    assert isinstance(info.value, ValueError)
    assert not info.value.report.ok
    assert any(fragment in str(issue) for issue in info.value.report.fatal), info.value.report.summary()
    assert fragment in str(info.value)


def test_missing_json_file_or_images_folder_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(CocoValidationError, match="nope.json: no such file"):
        load_coco(tmp_path / "nope.json", tmp_path)
    with pytest.raises(CocoValidationError, match="the images folder .*nope does not exist"):
        load_coco(_write(tmp_path, _valid_dataset(tmp_path)), tmp_path / "nope")


def test_ten_thousand_annotations_load_in_seconds(tmp_path: Path) -> None:
    num_images, per_image = 100, 100
    images, annotations = [], []
    for i in range(num_images):
        _png(tmp_path / "images" / f"{i}.png", 120, 160)
        images.append({"id": i, "file_name": f"{i}.png", "height": 120, "width": 160})
        for j in range(per_image):
            x, y = (j % 10) * 15, (j // 10) * 11
            polygon = [x, y, x + 12, y, x + 12, y + 9, x + 6, y + 10, x, y + 9]
            annotations.append(
                {"id": i * per_image + j, "image_id": i, "category_id": 1 + j % 3, "segmentation": [polygon],
                 "bbox": [x, y, 12, 10], "area": 110.0, "iscrowd": 0}
            )  # fmt: skip
    categories = [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]
    path = _write(tmp_path, {"images": images, "annotations": annotations, "categories": categories})

    start = time.process_time()
    data, report = load_coco(path, tmp_path / "images")
    elapsed = time.process_time() - start
    assert report.issues == [], report.summary()[:2000]
    assert data.num_annotations == 10_000
    # About 1 s of CPU on the 2-core CI machines; "minutes" is what this guards against.
    assert elapsed < 15, f"load_coco took {elapsed:.1f} s of CPU for 10k annotations"


def test_write_coco_round_trips_exactly_with_rle(tmp_path: Path) -> None:
    data, _ = load_coco(_write(tmp_path, _valid_dataset(tmp_path)), tmp_path / "images")
    out = tmp_path / "written" / "out.json"
    write_coco(out, data.images, data.categories, info={"note": "test"})
    again, report = load_coco(out, tmp_path / "images")

    assert report.issues == []
    assert again.categories == data.categories
    for before, after in zip(data.images, again.images, strict=True):
        assert (before.id, before.file_name, before.height, before.width) == (
            after.id, after.file_name, after.height, after.width,
        )  # fmt: skip
        for a, b in zip(before.annotations, after.annotations, strict=True):
            assert (a.id, a.category_id, a.label, a.iscrowd) == (b.id, b.category_id, b.label, b.iscrowd)
            np.testing.assert_array_equal(a.mask.to_full(), b.mask.to_full())
    written = json.loads(out.read_text())
    reference = COCO(str(out))
    for ann in written["annotations"]:
        rle = reference.annToRLE(ann)
        assert ann["area"] == mask_utils.area(rle)
        assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
        assert isinstance(ann["segmentation"]["counts"], str)
    assert written["info"] == {"note": "test"}
    assert [p.name for p in out.parent.iterdir()] == ["out.json"], "a temporary file was left behind"


def test_write_coco_polygons_are_exact_and_holes_stay_rle(tmp_path: Path) -> None:
    data, _ = load_coco(_write(tmp_path, _valid_dataset(tmp_path)), tmp_path / "images")
    out = tmp_path / "poly.json"
    write_coco(out, data.images, data.categories, segmentation="polygon")
    segmentations = {ann["id"]: ann["segmentation"] for ann in json.loads(out.read_text())["annotations"]}
    assert isinstance(segmentations[3], dict), "the ring has a hole: it must stay RLE"
    assert isinstance(segmentations[1], list) and isinstance(segmentations[2], list)
    assert len(segmentations[4]) == 2, "a two-part instance gives two polygons"

    again, _ = load_coco(out, tmp_path / "images")
    before = {a.id: a.mask.to_full() for image in data.images for a in image.annotations}
    for image in again.images:
        for ann in image.annotations:
            np.testing.assert_array_equal(ann.mask.to_full(), before[ann.id], err_msg=f"annotation {ann.id}")


def test_failed_write_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    data, _ = load_coco(_write(tmp_path, _valid_dataset(tmp_path)), tmp_path / "images")
    out = tmp_path / "out" / "ann.json"
    write_coco(out, data.images, data.categories)
    previous = out.read_bytes()
    with pytest.raises(TypeError):
        write_coco(out, data.images, data.categories, info={"not serialisable": object()})
    assert out.read_bytes() == previous
    assert [p.name for p in out.parent.iterdir()] == ["ann.json"]


def test_bad_writer_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match='segmentation must be "rle" or "polygon"'):
        coco_dict([], [Category(1, "a")], segmentation="mask")


def test_predictions_become_coco_results(tmp_path: Path) -> None:
    full = np.zeros((H, W), bool)
    full[3:9, 10:30] = True
    mask = CroppedMask.from_full(full)
    prediction = Prediction(
        image_size=(H, W),
        boxes=np.array([[10.0, 3.0, 30.0, 9.0], [0.0, 0.0, 5.0, 5.0]], dtype=np.float32),
        scores=np.array([0.9, 0.4], dtype=np.float32),
        labels=np.array([1, 3], dtype=np.int64),
        category_ids=np.array([11, 33], dtype=np.int64),
        masks=(mask, CroppedMask.from_full(np.eye(H, W, dtype=bool))),
    )
    failed = Prediction.failed("broken.png", "cannot read")
    results = predictions_to_coco_results([prediction, failed], [7, 8])

    assert len(results) == 2
    json.dumps(results)  # plain JSON types only
    first = results[0]
    assert first["image_id"] == 7 and first["category_id"] == 11
    assert first["bbox"] == [10.0, 3.0, 20.0, 6.0]
    assert first["score"] == pytest.approx(0.9)
    assert isinstance(first["segmentation"]["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(first["segmentation"]).astype(bool), full)
    assert results[1]["category_id"] == 33
    with pytest.raises(ValueError, match="2 predictions for 1 image ids"):
        predictions_to_coco_results([prediction, failed], [7])


def test_coco_data_rejects_unsorted_categories() -> None:
    with pytest.raises(ValueError, match="sorted by id and unique"):
        CocoData((Category(2, "b"), Category(1, "a")), [])


def test_annotation_from_mask_round_trips() -> None:
    full = _ring_mask()
    ann = CocoAnnotation.from_mask(1, 5, 1, CroppedMask.from_full(full))
    image = CocoImage(1, "x.png", Path("x.png"), H, W, (ann,))
    assert isinstance(ann.rle["counts"], str)
    np.testing.assert_array_equal(ann.mask.to_full(), full)
    assert coco_dict([image], [Category(5, "ring")])["annotations"][0]["area"] == full.sum()


def test_coco_modules_do_not_import_torch() -> None:
    code = (
        "import sys, maskrcnn_core.data, maskrcnn_core.data.coco, maskrcnn_core.data.synthetic, "
        "maskrcnn_core.engine.evaluation; print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
