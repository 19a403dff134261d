"""Mask formats against pycocotools: RLE encode/decode, polygons, bbox, area, IoU, and bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from maskrcnn_core.masks import (
    InvalidSegmentationError,
    mask_area,
    mask_bbox_xywh,
    mask_to_polygons,
    mask_to_rle,
    masks_iou,
    polygons_to_mask,
    rle_to_mask,
    segmentation_to_mask,
)
from maskrcnn_core.types import CroppedMask

# pycocotools' decode (used here only as the reference) trips a numpy 2 deprecation warning.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _coco_encode(full: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))


def _random_masks(seed: int, count: int) -> list[np.ndarray]:
    """Full-image bool masks: noise of any density, blobs, full-height and full-image cases, empty."""
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(count):
        height, width = int(rng.integers(1, 90)), int(rng.integers(1, 90))
        full = np.zeros((height, width), dtype=bool)
        kind = i % 6
        if kind == 0:
            full = rng.random((height, width)) < rng.uniform(0.01, 0.99)
        elif kind == 1:
            x0, x1 = sorted(rng.integers(0, width + 1, 2))
            full[:, x0:x1] = rng.random((height, x1 - x0)) < 0.9  # crops spanning the full height
        elif kind == 2:
            full[:] = True
        elif kind == 3:
            canvas = np.zeros((height, width), np.uint8)
            for _ in range(3):
                centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
                cv2.circle(canvas, centre, int(rng.integers(1, 20)), 1, -1)
            full = canvas.astype(bool)
        elif kind == 4:
            full[rng.integers(0, height), rng.integers(0, width)] = True
        masks.append(full)
    return masks


def _donut_and_blob() -> np.ndarray:
    """A ring (a hole in the middle) and a separate square: one instance in two parts."""
    canvas = np.zeros((60, 80), np.uint8)
    cv2.circle(canvas, (25, 30), 20, 1, -1)
    cv2.circle(canvas, (25, 30), 8, 0, -1)
    canvas[10:25, 55:75] = 1
    return canvas.astype(bool)


def test_mask_to_rle_equals_pycocotools_encode():
    for full in _random_masks(0, 240):
        rle = mask_to_rle(CroppedMask.from_full(full))
        expected = _coco_encode(full)
        assert rle == {"size": list(full.shape), "counts": expected["counts"].decode("ascii")}


def test_mask_to_rle_of_a_crop_that_is_not_tight():
    # A crop with empty border rows and columns (as postprocess returns) encodes like its full image.
    crop = np.zeros((20, 30), dtype=bool)
    crop[5:9, 0:30] = True
    mask = CroppedMask(7, 3, crop, (40, 50))
    assert mask_to_rle(mask)["counts"] == _coco_encode(mask.to_full())["counts"].decode("ascii")
    empty = CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), (40, 50))
    assert mask_to_rle(empty)["counts"] == _coco_encode(np.zeros((40, 50), bool))["counts"].decode("ascii")


def test_rle_to_mask_equals_pycocotools_decode_for_every_counts_form():
    for full in _random_masks(1, 240):
        compressed = _coco_encode(full)
        uncompressed = {"size": list(full.shape), "counts": _uncompressed_counts(full)}
        for rle in (
            compressed,
            {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")},
            uncompressed,
        ):
            mask = rle_to_mask(rle)
            assert mask.image_size == full.shape
            np.testing.assert_array_equal(mask.to_full(), coco_mask.decode(compressed).astype(bool))
            assert mask.crop_box == (CroppedMask.from_full(full).crop_box)


def _uncompressed_counts(full: np.ndarray) -> list[int]:
    """Run lengths written out by hand (column-major, starting with 0s), as COCO files store them."""
    flat = full.ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat.size and flat[0] else counts


def test_long_runs_round_trip():
    # Runs far longer than 31 pixels, and run-length differences of both signs, in the compressed string.
    full = np.zeros((1000, 1200), dtype=bool)
    full[100:900, 50:1100] = True
    full[400:420, 300:1000] = False
    full[:, 1150] = True
    rle = mask_to_rle(CroppedMask.from_full(full))
    assert rle["counts"] == _coco_encode(full)["counts"].decode("ascii")
    np.testing.assert_array_equal(rle_to_mask(rle).to_full(), full)


def test_holes_and_parts_survive_rle():
    full = _donut_and_blob()
    mask = rle_to_mask(mask_to_rle(CroppedMask.from_full(full)))
    np.testing.assert_array_equal(mask.to_full(), full)
    assert not mask.to_full()[30, 25]  # the hole stays a hole


def test_polygons_outline_pixel_edges_and_fill_holes():
    full = _donut_and_blob()
    polygons = mask_to_polygons(CroppedMask.from_full(full))
    assert len(polygons) == 2  # ring and square
    for polygon in polygons:
        assert len(polygon) >= 6 and len(polygon) % 2 == 0
        assert all(float(v).is_integer() for v in polygon)  # vertices on pixel corners
    # The ring comes back without its hole: polygons cannot hold one.
    filled = full.astype(np.uint8)
    cv2.circle(filled, (25, 30), 8, 1, -1)
    np.testing.assert_array_equal(polygons_to_mask(polygons, full.shape).to_full(), filled.astype(bool))


def test_polygon_round_trip_is_exact_without_holes():
    rng = np.random.default_rng(2)
    for _ in range(60):
        height, width = int(rng.integers(5, 70)), int(rng.integers(5, 70))
        canvas = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
            canvas[y0 : y0 + int(rng.integers(1, 15)), x0 : x0 + int(rng.integers(1, 15))] = 1
            cv2.circle(canvas, (int(rng.integers(0, width)), int(rng.integers(0, height))), 4, 1, -1)
        # Fill the holes that overlapping shapes may leave, with OpenCV's own hole filling.
        contours, _ = cv2.findContours(canvas.copy(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, 1, -1)
        full = canvas.astype(bool)
        mask = CroppedMask.from_full(full)
        polygons = mask_to_polygons(mask)
        assert all(0 <= v <= width for p in polygons for v in p[0::2])
        assert all(0 <= v <= height for p in polygons for v in p[1::2])
        np.testing.assert_array_equal(polygons_to_mask(polygons, full.shape).to_full(), full)


def test_single_pixels_and_thin_lines_make_valid_polygons():
    full = np.zeros((10, 12), dtype=bool)
    full[0, 0] = True
    full[5, 2:9] = True
    polygons = mask_to_polygons(CroppedMask.from_full(full))
    corners = sorted(sorted(zip(p[0::2], p[1::2], strict=True)) for p in polygons)
    assert corners == [[(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 5), (2, 6), (9, 5), (9, 6)]]
    np.testing.assert_array_equal(polygons_to_mask(polygons, (10, 12)).to_full(), full)


def test_tolerance_simplifies_outlines():
    canvas = np.zeros((200, 200), np.uint8)
    cv2.circle(canvas, (100, 100), 70, 1, -1)
    canvas[0, 0] = 1  # a single pixel keeps its exact square whatever the tolerance
    mask = CroppedMask.from_full(canvas.astype(bool))
    exact = mask_to_polygons(mask)
    simple = mask_to_polygons(mask, tolerance=2.0)
    assert len(simple) == 2 and all(len(p) >= 6 for p in simple)
    assert max(len(p) for p in simple) < max(len(p) for p in exact) / 3
    assert masks_iou(polygons_to_mask(simple, (200, 200)), mask) > 0.97
    with pytest.raises(ValueError, match="tolerance"):
        mask_to_polygons(mask, tolerance=-1)


def test_empty_mask_has_no_polygons():
    assert mask_to_polygons(CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), (5, 5))) == []
    assert mask_to_polygons(CroppedMask(1, 1, np.zeros((2, 2), dtype=bool), (5, 5))) == []


def test_polygons_to_mask_equals_pycocotools():
    rng = np.random.default_rng(3)
    for _ in range(40):
        height, width = int(rng.integers(10, 80)), int(rng.integers(10, 80))
        # Points may fall a little outside the image: pycocotools clips them.
        polygons = [
            (rng.random((int(rng.integers(3, 9)), 2)) * [width * 1.2, height * 1.2] - 3).ravel().tolist()
            for _ in range(int(rng.integers(1, 4)))
        ]
        expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width)))
        np.testing.assert_array_equal(
            polygons_to_mask(polygons, (height, width)).to_full(), expected.astype(bool)
        )


def test_segmentation_to_mask_accepts_every_coco_form():
    full = _donut_and_blob()
    compressed = _coco_encode(full)
    forms = [
        compressed,
        {"size": [60, 80], "counts": compressed["counts"].decode("ascii")},
        {"size": [60, 80], "counts": _uncompressed_counts(full)},
    ]
    for segmentation in forms:
        np.testing.assert_array_equal(segmentation_to_mask(segmentation, (60, 80)).to_full(), full)
    square = segmentation_to_mask([[10, 20, 30, 20, 30, 25, 10, 25]], (60, 80))
    assert square.crop_box == (10, 20, 30, 25) and square.mask.all()


def test_bbox_and_area_match_pycocotools():
    for full in _random_masks(4, 120):
        mask = CroppedMask.from_full(full)
        rle = _coco_encode(full)
        assert mask_bbox_xywh(mask) == coco_mask.toBbox(rle).tolist()
        assert mask_area(mask) == int(coco_mask.area(rle))


def test_masks_iou_matches_pycocotools():
    rng = np.random.default_rng(5)
    for _ in range(80):
        fulls = []
        for _ in range(2):
            full = np.zeros((50, 70), dtype=bool)
            x0, y0 = int(rng.integers(0, 60)), int(rng.integers(0, 40))
            full[y0 : y0 + int(rng.integers(0, 30)), x0 : x0 + int(rng.integers(0, 30))] = rng.random() < 0.95
            fulls.append(full)
        a, b = (CroppedMask.from_full(f) for f in fulls)
        expected = coco_mask.iou([_coco_encode(fulls[0])], [_coco_encode(fulls[1])], [0])[0, 0]
        assert masks_iou(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="different images"):
        masks_iou(CroppedMask.from_full(np.ones((3, 3))), CroppedMask.from_full(np.ones((3, 4))))


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ("abc", "list of polygons or an RLE dict"),
        (None, "list of polygons or an RLE dict"),
        ([], "non-empty list of polygons"),
        ([[1, 2, 3, 4]], "2 points; at least 3"),
        ([[1, 2, 3, 4, 5]], "odd number of coordinates"),
        ([[1, 2, "x", 4, 5, 6]], "non-numeric"),
        ([[1, 2, 3, 4, float("nan"), 6]], "NaN or infinite"),
        ([[[1, 2], [3, 4], [5, 6]]], "flat list of numbers"),
        ([5], "polygon 0 must be a list"),
        ({"counts": "PP"}, "'size' and 'counts'"),
        ({"size": [10], "counts": [100]}, r"\[H, W\]"),
        ({"size": [20, 10], "counts": [200]}, r"size \[20, 10\].*does not match"),
        ({"size": [10, 10], "counts": [50, 20]}, "cover 70 pixels.*has 100"),
        ({"size": [10, 10], "counts": [50, -10, 60]}, "negative run length"),
        ({"size": [10, 10], "counts": [50.0, 50.0]}, "flat list of integers"),
        ({"size": [10, 10], "counts": 100}, "str, bytes or a list of ints"),
        ({"size": [10, 10], "counts": ""}, "empty"),
        ({"size": [10, 10], "counts": "2"}, "cover 2 pixels"),
        ({"size": [10, 10], "counts": "\x01\x02"}, "alphabet"),
        ({"size": [10, 10], "counts": "Pé"}, "non-ASCII"),
        ({"size": [10, 10], "counts": "P"}, "truncated"),
        ({"size": [10, 10], "counts": "oooooooo0"}, "too large"),
    ],
)
def test_bad_segmentations_raise_invalid_segmentation_error(segmentation, message):
    with pytest.raises(InvalidSegmentationError, match=message):
        segmentation_to_mask(segmentation, (10, 10))


def test_rle_to_mask_rejects_counts_pycocotools_would_decode_as_garbage():
    # pycocotools decodes "2" for a 4x4 image (2 of 16 pixels) from uninitialised memory; we refuse it.
    with pytest.raises(InvalidSegmentationError, match="cover 2 pixels, but its size \\[4, 4\\] has 16"):
        rle_to_mask({"size": [4, 4], "counts": b"2"})
    assert issubclass(InvalidSegmentationError, ValueError)


def _assert_decodes_like_pycocotools(full: np.ndarray) -> None:
    """``rle_to_mask`` of ``full``'s RLE (compressed str and bytes, uncompressed) is the tight crop of
    pycocotools' decode, pixel for pixel."""
    compressed = _coco_encode(full)
    expected = CroppedMask.from_full(coco_mask.decode(compressed).astype(bool))
    forms = (
        compressed,
        {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")},
        {"size": list(full.shape), "counts": _uncompressed_counts(full)},
    )
    for rle in forms:
        mask = rle_to_mask(rle)
        assert mask.image_size == full.shape
        assert (mask.x0, mask.y0, mask.mask.shape) == (expected.x0, expected.y0, expected.mask.shape)
        assert mask.mask.dtype == np.bool_ and mask.mask.flags.c_contiguous
        np.testing.assert_array_equal(mask.mask, expected.mask)


def _decode_cases(seed: int, count: int) -> list[np.ndarray]:
    """Full-image masks for the decoder: holes, several parts, parts on the image's borders and corners,
    runs that go on from one column to the next, single pixels, noise, empty; thin images too."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        height, width = int(rng.integers(1, 120)), int(rng.integers(1, 120))
        if i % 10 == 9:  # one row or one column
            height, width = (1, width) if rng.random() < 0.5 else (height, 1)
        full = np.zeros((height, width), dtype=bool)
        kind = i % 7
        if kind == 0:  # rings (a hole each) and a separate rectangle, anywhere, clipped at the borders
            canvas = np.zeros((height, width), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                centre = (int(rng.integers(-5, width + 5)), int(rng.integers(-5, height + 5)))
                radius = int(rng.integers(3, 30))
                cv2.circle(canvas, centre, radius, 1, -1)
                cv2.circle(canvas, centre, radius // 2, 0, -1)
            y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
            canvas[y0 : y0 + int(rng.integers(1, 20)), x0 : x0 + int(rng.integers(1, 20))] = 1
            full = canvas.astype(bool)
        elif kind == 1:  # boxes flush with the image's borders and corners
            for _ in range(int(rng.integers(1, 4))):
                bh, bw = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
                y0 = int(rng.choice([0, height - bh, rng.integers(0, height - bh + 1)]))
                x0 = int(rng.choice([0, width - bw, rng.integers(0, width - bw + 1)]))
                full[y0 : y0 + bh, x0 : x0 + bw] = True
        elif kind == 2:  # runs across columns: contiguous in column-major order
            flat = full.reshape(-1, order="F")
            for _ in range(int(rng.integers(1, 4))):
                a, b = sorted(int(v) for v in rng.integers(0, flat.size + 1, 2))
                flat[a:b] = True
            full = flat.reshape((height, width), order="F")
        elif kind == 3:  # one pixel, often in a corner
            corners = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
            y, x = corners[i % 4] if rng.random() < 0.5 else (rng.integers(0, height), rng.integers(0, width))
            full[y, x] = True
        elif kind == 4:
            full = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        elif kind == 5:  # a small part near each of two opposite corners: a crop with empty middle rows
            full[0, int(rng.integers(0, width))] = True
            full[height - 1, int(rng.integers(0, width))] = True
        cases.append(full)
    return cases


def test_rle_to_mask_equals_pycocotools_decode_on_random_masks():
    for full in _decode_cases(6, 350):
        _assert_decodes_like_pycocotools(full)


def test_rle_to_mask_of_runs_across_columns():
    full = np.zeros((8, 6), dtype=bool)
    full[6:, 1] = True  # one run: the bottom of column 1 and the top of column 2 (not its middle rows)
    full[:2, 2] = True
    _assert_decodes_like_pycocotools(full)
    assert rle_to_mask(_coco_encode(full)).crop_box == (1, 0, 3, 8)
    full[3:, 3] = True  # a run over all of column 4, from column 3 into column 5
    full[:, 4] = True
    full[:1, 5] = True
    _assert_decodes_like_pycocotools(full)
    full = np.ones((8, 6), dtype=bool)  # the whole image: one run, first and last pixels set
    _assert_decodes_like_pycocotools(full)


def test_rle_to_mask_of_uncompressed_counts_with_empty_runs():
    # Counts may start with an empty run of 0s (pixel 0 set) and hold empty runs between runs of 1s.
    for counts in ([0, 5, 95], [5, 3, 0, 2, 90], [0, 3, 0, 7, 88, 2], [40, 0, 60], [100], [0, 100]):
        mask = rle_to_mask({"size": [10, 10], "counts": counts})
        expected = coco_mask.decode(coco_mask.frPyObjects({"size": [10, 10], "counts": counts}, 10, 10))
        np.testing.assert_array_equal(mask.to_full(), expected.astype(bool))
        assert mask.crop_box == CroppedMask.from_full(expected).crop_box


def test_rle_to_mask_of_small_masks_on_a_large_image():
    height, width = 3000, 4000
    fulls = []
    canvas = np.zeros((height, width), np.uint8)
    cv2.circle(canvas, (2000, 1500), 120, 1, -1)  # a ring and a separate square
    cv2.circle(canvas, (2000, 1500), 40, 0, -1)
    canvas[200:260, 3500:3580] = 1
    fulls.append(canvas.astype(bool))
    for y, x in ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (1234, 2345)):
        full = np.zeros((height, width), dtype=bool)
        full[y, x] = True
        fulls.append(full)
    full = np.zeros((height, width), dtype=bool)
    full[height - 30 :, 0:40] = True  # the bottom-left corner, and a run from column 40 into 41
    full[height - 5 :, 40] = full[:7, 41] = True
    fulls.append(full)
    full = np.zeros((height, width), dtype=bool)
    full[:, width - 1] = True  # the last column, full height
    full[10:20, width - 3] = True
    fulls.append(full)
    for full in fulls:
        _assert_decodes_like_pycocotools(full)


def test_rle_to_mask_works_on_the_crop_alone():
    # A 50x50 mask on a 20000x20000 image: the decoder's memory follows the crop, not the image (nor the
    # crop's columns at full image height, 1 MB here).
    import tracemalloc

    crop = np.ones((50, 50), dtype=bool)
    crop[20:30, 20:30] = False
    rle = mask_to_rle(CroppedMask(7000, 9000, crop, (20000, 20000)))
    tracemalloc.start()
    try:
        mask = rle_to_mask(rle)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (mask.x0, mask.y0) == (7000, 9000)
    np.testing.assert_array_equal(mask.mask, crop)
    assert peak < 100_000
