"""Mask formats: :class:`CroppedMask` to and from COCO RLE and COCO polygons (numpy + pycocotools, no torch).

COCO conventions: an RLE is ``{"size": [H, W], "counts": ...}`` whose counts are the lengths of alternating
runs of 0s and 1s over the image in column-major order, starting with 0s; compressed counts are
pycocotools' ASCII string, uncompressed counts a list of ints. A polygon is ``[x1, y1, x2, y2, ...]`` in
image pixels, where pixel ``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``.

RLE is the lossless format and the default export: a polygon outlines one connected part and cannot hold
a hole, so :func:`mask_to_polygons` fills holes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from maskrcnn_core.types import CroppedMask

__all__ = [
    "InvalidSegmentationError",
    "mask_area",
    "mask_bbox_xywh",
    "mask_to_polygons",
    "mask_to_rle",
    "masks_iou",
    "polygons_to_mask",
    "rle_to_mask",
    "segmentation_to_mask",
]


class InvalidSegmentationError(ValueError):
    """A COCO ``segmentation`` (RLE or polygons) that is malformed or does not fit its image."""


def mask_to_rle(mask: CroppedMask) -> dict:
    """Compressed COCO RLE ``{"size": [H, W], "counts": str}`` of the whole image.

    Equal to ``pycocotools.mask.encode(np.asfortranarray(full.astype(np.uint8)))`` (with str counts), but
    the runs are found in the crop alone: the full ``H x W`` image is never built.
    """
    height, width = mask.image_size
    crop = mask.mask
    h, w = crop.shape
    # Column-major, one zero row above and below each column so that runs end at column boundaries.
    columns = np.zeros((w, h + 2), dtype=np.int8)
    columns[:, 1:-1] = crop.T
    step = np.diff(columns, axis=1)
    start_col, start_row = np.nonzero(step == 1)  # row-major order over (column, row): image order
    end_col, end_row = np.nonzero(step == -1)
    starts = (mask.x0 + start_col) * height + mask.y0 + start_row
    ends = (mask.x0 + end_col) * height + mask.y0 + end_row
    if starts.size == 0:
        counts = np.array([height * width])
    else:
        # A run that ends at the bottom of one column and goes on at the top of the next is one run in
        # the image (only possible when the crop spans the image's full height).
        joined = ends[:-1] == starts[1:]
        starts = starts[np.concatenate(([True], ~joined))]
        ends = ends[np.concatenate((~joined, [True]))]
        bounds = np.concatenate(([0], np.stack([starts, ends], axis=1).ravel(), [height * width]))
        counts = np.diff(bounds)
        if counts[-1] == 0:  # the last pixel is set: pycocotools writes no trailing run of 0s
            counts = counts[:-1]
    rle = coco_mask.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> CroppedMask:
    """The :class:`CroppedMask` (cropped to its set pixels) of a COCO RLE with compressed (``str`` or
    ``bytes``) or uncompressed (list of ints) counts.

    Equal to ``CroppedMask.from_full(pycocotools.mask.decode(rle))``, but in time proportional to the number
    of runs plus the crop's area: the full ``H x W`` image is never built.

    Raises :class:`InvalidSegmentationError` for a malformed RLE (see :func:`segmentation_to_mask`).
    """
    counts, image_size = _rle_counts(rle)
    return _mask_from_counts(counts, image_size)


def polygons_to_mask(polygons: Sequence[Sequence[float]], image_size: tuple[int, int]) -> CroppedMask:
    """Rasterise COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (image pixels) with pycocotools.

    All parts form one instance (their union). Raises :class:`InvalidSegmentationError` for a polygon
    with fewer than 3 points, an odd number of coordinates, or coordinates that are not finite numbers.
    """
    height, width = _check_image_size(image_size)
    checked = _check_polygons(polygons)
    rle = coco_mask.merge(coco_mask.frPyObjects(checked, height, width))
    return rle_to_mask(rle)


def mask_to_polygons(mask: CroppedMask, *, tolerance: float = 0.0) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]``: one per connected part (8-connected), outer outline
    only, in image pixels with vertices on pixel corners.

    With ``tolerance == 0`` the outline follows the pixel edges exactly, so ``polygons_to_mask`` gives
    back the mask with its holes filled: polygons cannot hold holes (use RLE for those). ``tolerance > 0``
    simplifies each outline with ``cv2.approxPolyDP`` (maximum distance in pixels); a part whose outline
    would fall below 3 points keeps its exact outline. Every polygon has at least 3 points.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    if not mask.mask.any():
        return []
    # Trace the mask upsampled 2x: its boundary pixels 2x and 2x + 1 map, by (u + 1) // 2, to the
    # corners x and x + 1 of the original pixel x, so the outline runs along pixel edges instead of
    # through boundary pixel centres (which would lose half of every boundary pixel).
    upsampled = np.pad(mask.mask.astype(np.uint8).repeat(2, axis=0).repeat(2, axis=1), 1)
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    origin = np.array([mask.x0, mask.y0])
    polygons = []
    for contour in contours:
        outline = _drop_redundant_vertices(contour.reshape(-1, 2) // 2)  # (u - 1 + 1) // 2 after np.pad
        if tolerance > 0:
            simplified = cv2.approxPolyDP(outline.reshape(-1, 1, 2).astype(np.int32), tolerance, True)
            if len(simplified) >= 3:
                outline = simplified.reshape(-1, 2)
        polygons.append((outline + origin).astype(float).ravel().tolist())
    return polygons


def segmentation_to_mask(segmentation: object, image_size: tuple[int, int]) -> CroppedMask:
    """The mask of any COCO ``segmentation``: a polygon list, or an RLE dict (compressed or not).

    Raises :class:`InvalidSegmentationError` naming the problem: not a list or dict, no polygons, a
    polygon with fewer than 3 points, an odd or non-numeric coordinate list, an RLE without ``size`` or
    ``counts``, an RLE whose size differs from ``image_size``, counts that are negative, malformed or do
    not sum to ``H * W``.
    """
    height, width = _check_image_size(image_size)
    if isinstance(segmentation, dict):
        counts, rle_size = _rle_counts(segmentation)
        if rle_size != (height, width):
            raise InvalidSegmentationError(
                f"RLE size {list(rle_size)} (H, W) does not match the image's {[height, width]}"
            )
        return _mask_from_counts(counts, rle_size)
    if isinstance(segmentation, list | tuple):
        return polygons_to_mask(segmentation, (height, width))
    raise InvalidSegmentationError(
        f"a segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
    )


def mask_bbox_xywh(mask: CroppedMask) -> list[float]:
    """COCO ``bbox`` ``[x, y, width, height]`` of the set pixels, as pycocotools' ``toBbox`` gives it;
    ``[0, 0, 0, 0]`` for an empty mask."""
    box = mask.tight_box()
    if box is None:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0, x1, y1 = box
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def mask_area(mask: CroppedMask) -> int:
    """Number of set pixels (pycocotools' ``area``)."""
    return mask.area


def masks_iou(a: CroppedMask, b: CroppedMask) -> float:
    """Intersection over union of two masks of the same image, counted on the overlap of their crops
    only; 0.0 when both are empty."""
    if a.image_size != b.image_size:
        raise ValueError(f"masks of different images: {a.image_size} and {b.image_size} (H, W)")
    ax0, ay0, ax1, ay1 = a.crop_box
    bx0, by0, bx1, by1 = b.crop_box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    inter = 0
    if x1 > x0 and y1 > y0:
        overlap_a = a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
        overlap_b = b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        inter = int(np.count_nonzero(overlap_a & overlap_b))
    union = a.area + b.area - inter
    return inter / union if union else 0.0


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(s) != s or s < 1 for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive integers, got {image_size}")
    return int(image_size[0]), int(image_size[1])


def _check_polygons(polygons: object) -> list[list[float]]:
    """Validated COCO polygons as lists of floats (pycocotools would take 4 numbers for a box)."""
    if not isinstance(polygons, list | tuple) or len(polygons) == 0:
        raise InvalidSegmentationError(f"expected a non-empty list of polygons, got {polygons!r:.80}")
    checked = []
    for i, polygon in enumerate(polygons):
        if not isinstance(polygon, list | tuple | np.ndarray):
            raise InvalidSegmentationError(
                f"polygon {i} must be a list [x1, y1, x2, y2, ...], got {type(polygon).__name__}"
            )
        try:
            coords = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidSegmentationError(
                f"polygon {i} has non-numeric coordinates: {polygon!r:.80}"
            ) from None
        if coords.ndim != 1:
            raise InvalidSegmentationError(
                f"polygon {i} must be a flat list of numbers, got shape {coords.shape}"
            )
        if coords.size % 2:
            raise InvalidSegmentationError(f"polygon {i} has an odd number of coordinates ({coords.size})")
        if coords.size < 6:
            raise InvalidSegmentationError(
                f"polygon {i} has {coords.size // 2} points; at least 3 are needed"
            )
        if not np.isfinite(coords).all():
            raise InvalidSegmentationError(f"polygon {i} has NaN or infinite coordinates")
        checked.append(coords.tolist())
    return checked


def _rle_counts(rle: object) -> tuple[np.ndarray, tuple[int, int]]:
    """Validated uncompressed counts ``(K,)`` int64 and ``(H, W)`` of an RLE dict."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidSegmentationError(f"an RLE must be a dict with 'size' and 'counts', got {rle!r:.80}")
    size = rle["size"]
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(s, int | np.integer) and s >= 0 for s in size)
    ):
        raise InvalidSegmentationError(f"RLE 'size' must be [H, W] non-negative integers, got {size!r:.80}")
    height, width = int(size[0]), int(size[1])
    raw = rle["counts"]
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidSegmentationError("RLE 'counts' string has non-ASCII characters") from None
    if isinstance(raw, bytes):
        counts = _decode_counts(raw)
    elif isinstance(raw, list | tuple | np.ndarray):
        counts = np.asarray(raw)
        if counts.ndim != 1 or counts.dtype.kind not in "iu":
            raise InvalidSegmentationError("uncompressed RLE 'counts' must be a flat list of integers")
        counts = counts.astype(np.int64)
    else:
        raise InvalidSegmentationError(
            f"RLE 'counts' must be a str, bytes or a list of ints, got {type(raw).__name__}"
        )
    if (counts < 0).any():
        raise InvalidSegmentationError("RLE 'counts' has a negative run length")
    total = int(counts.sum())
    if total != height * width:
        raise InvalidSegmentationError(
            f"RLE 'counts' cover {total} pixels, but its size {[height, width]} has {height * width}"
        )
    return counts, (height, width)


def _decode_counts(text: bytes) -> np.ndarray:
    """pycocotools' compressed counts string -> ``(K,)`` int64 run lengths (``rleFrString``, vectorised).

    Each count is a little-endian run of 5-bit groups, ``char - 48``, where bit 0x20 means "more groups
    follow" and bit 0x10 of the last group is the sign; from the fourth count on, each is stored as the
    difference to the count two places before it.
    """
    if not text:
        raise InvalidSegmentationError("RLE 'counts' string is empty")
    chars = np.frombuffer(text, dtype=np.uint8).astype(np.int64) - 48
    if ((chars < 0) | (chars > 63)).any():
        raise InvalidSegmentationError("RLE 'counts' string has characters outside pycocotools' alphabet")
    last = (chars & 0x20) == 0
    if not last[-1]:
        raise InvalidSegmentationError("RLE 'counts' string is truncated (its last number is unfinished)")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 7 groups hold 35 bits; pycocotools counts are 32-bit
        raise InvalidSegmentationError("RLE 'counts' string has a number too large for a run length")
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((chars & 0x1F) << shift, starts)
    values -= np.where(chars[ends] & 0x10, 1 << (5 * lengths), 0)
    counts = values.copy()
    if counts.size > 3:
        counts[3::2] = values[1] + np.cumsum(values[3::2])
    if counts.size > 4:
        counts[4::2] = values[2] + np.cumsum(values[4::2])
    return counts


def _mask_from_counts(counts: np.ndarray, image_size: tuple[int, int]) -> CroppedMask:
    """Validated run lengths -> :class:`CroppedMask` cropped to the set pixels.

    Works on the runs and on the crop alone, in time proportional to the number of runs plus the crop's
    area (never the image's): the crop box comes from the runs' first and last pixels, then each run of
    1s is mapped to the crop's own column-major order, where ``np.repeat`` writes the crop out run by run.
    """
    height, _ = image_size
    ends = np.cumsum(counts)
    run_starts, run_ends = (ends - counts)[1::2], ends[1::2]
    nonempty = run_ends > run_starts
    run_starts, run_ends = run_starts[nonempty], run_ends[nonempty]
    if run_starts.size == 0:
        return CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), image_size)
    start_col, start_row = np.divmod(run_starts, height)
    last_col, last_row = np.divmod(run_ends - 1, height)
    col0, col1 = int(start_col[0]), int(last_col[-1]) + 1
    if (last_col != start_col).any():
        # A run that goes on from the bottom of one column to the top of the next touches the image's
        # first and last rows: the crop spans the full height.
        row0, row1 = 0, height
    else:
        row0, row1 = int(start_row.min()), int(last_row.max()) + 1
    h, w = row1 - row0, col1 - col0
    # Each run [start, end) in the image is [crop_start, crop_start + end - start) in the crop's
    # column-major order: within one column when the crop is shorter than the image, and when it is not
    # (row0 == 0, h == height) crop_start = start - col0 * height, so runs across columns stay contiguous.
    crop_starts = (start_col - col0) * h + (start_row - row0)
    crop_ends = crop_starts + (run_ends - run_starts)
    # The crop's own runs: 0s up to the first start, the 1-run, 0s up to the next start, ... 0s to the
    # end (some of these 0-runs may be empty); np.repeat writes them out.
    bounds = np.concatenate(([0], np.stack([crop_starts, crop_ends], axis=1).ravel(), [h * w]))
    values = np.zeros(bounds.size - 1, dtype=bool)
    values[1::2] = True
    columns = np.repeat(values, np.diff(bounds)).reshape(w, h)
    return CroppedMask(col0, row0, np.ascontiguousarray(columns.T), image_size)


def _drop_redundant_vertices(points: np.ndarray) -> np.ndarray:
    """``(K, 2)`` closed outline without repeated points and without vertices in the middle of a
    straight edge."""
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    points = points[keep] if keep.any() else points[:1]
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[cross != 0]
