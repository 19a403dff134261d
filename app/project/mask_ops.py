"""Mask editing on :class:`~maskrcnn_core.types.CroppedMask` crops: numpy and cv2 only, no Qt, no torch.

Every operation works on crops (never on a full-image array per instance) and returns a new mask cropped
tight to its pixels. Pixel ``(y, x)`` covers ``[x, x + 1) x [y, y + 1)``: a shape drawn in continuous image
coordinates (a brush stroke, a polygon) covers the pixels whose *centre* lies inside it.

:class:`MaskDelta` is what an undo command stores: the box of the pixels that changed and the before /
after values there, a few bytes for a brush stroke whatever the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from maskrcnn_core.types import CroppedMask

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, x1 / y1 exclusive


def instance_box(mask: CroppedMask) -> tuple[float, float, float, float]:
    """The box an instance of ``mask`` is stored with: its pixels' tight ``(x0, y0, x1, y1)``, as floats.

    ``ValueError`` for an empty mask: an instance needs at least one pixel.
    """
    box = mask.tight_box()
    if box is None:
        raise ValueError("an instance needs at least one mask pixel")
    x0, y0, x1, y1 = box
    return float(x0), float(y0), float(x1), float(y1)


def empty_mask(image_size: tuple[int, int]) -> CroppedMask:
    return CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), (int(image_size[0]), int(image_size[1])))


def region(mask: CroppedMask, box: Box) -> np.ndarray:
    """The mask's pixels inside ``box`` as a ``(y1 - y0, x1 - x0)`` bool array (False outside the crop)."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    cx0, cy0, cx1, cy1 = mask.crop_box
    ix0, iy0, ix1, iy1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = mask.mask[
            iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0
        ]
    return out


def tighten(x0: int, y0: int, pixels: np.ndarray, image_size: tuple[int, int]) -> CroppedMask:
    """The :class:`CroppedMask` of ``pixels`` placed at ``(x0, y0)``, cropped to its set pixels."""
    rows = np.flatnonzero(pixels.any(axis=1))
    if rows.size == 0:
        return empty_mask(image_size)
    cols = np.flatnonzero(pixels.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CroppedMask(x0 + c0, y0 + r0, np.ascontiguousarray(pixels[r0:r1, c0:c1]), image_size)


def union_box(*boxes: Box | None) -> Box | None:
    present = [b for b in boxes if b is not None and b[2] > b[0] and b[3] > b[1]]
    if not present:
        return None
    return (
        min(b[0] for b in present),
        min(b[1] for b in present),
        max(b[2] for b in present),
        max(b[3] for b in present),
    )


def _clip_box(box: Box, image_size: tuple[int, int]) -> Box:
    height, width = image_size
    return (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))


def paste(mask: CroppedMask, x0: int, y0: int, patch: np.ndarray) -> CroppedMask:
    """``mask`` with the pixels of the box at ``(x0, y0)`` replaced by ``patch``."""
    h, w = patch.shape
    box = union_box(mask.crop_box, (x0, y0, x0 + w, y0 + h))
    if box is None:
        return empty_mask(mask.image_size)
    pixels = region(mask, box)
    pixels[y0 - box[1] : y0 - box[1] + h, x0 - box[0] : x0 - box[0] + w] = patch
    return tighten(box[0], box[1], pixels, mask.image_size)


def combine(mask: CroppedMask, shape: CroppedMask, *, add: bool) -> CroppedMask:
    """``mask`` with ``shape``'s pixels added (union) or removed (difference)."""
    if shape.area == 0:
        return mask
    x0, y0, x1, y1 = shape.crop_box
    current = region(mask, (x0, y0, x1, y1))
    return paste(mask, x0, y0, current | shape.mask if add else current & ~shape.mask)


@dataclass(frozen=True, eq=False)
class MaskDelta:
    """The pixels of one mask that an edit changed: ``before`` and ``after`` bool arrays ``(h, w)`` whose
    top-left pixel is ``(y0, x0)``. Empty (0x0) when nothing changed."""

    x0: int
    y0: int
    before: np.ndarray
    after: np.ndarray

    @property
    def changed(self) -> int:
        """How many pixels differ."""
        return int(np.count_nonzero(self.before != self.after))

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)

    def apply(self, mask: CroppedMask, *, forward: bool = True) -> CroppedMask:
        """``mask`` with the ``after`` (or, undoing, the ``before``) pixels written back."""
        if self.before.size == 0:
            return mask
        return paste(mask, self.x0, self.y0, self.after if forward else self.before)

    @classmethod
    def between(cls, old: CroppedMask, new: CroppedMask) -> MaskDelta:
        """The delta that turns ``old`` into ``new``, cropped to the pixels that differ."""
        box = union_box(old.crop_box, new.crop_box)
        empty = np.zeros((0, 0), dtype=bool)
        if box is None:
            return cls(0, 0, empty, empty)
        before, after = region(old, box), region(new, box)
        diff = before != after
        rows = np.flatnonzero(diff.any(axis=1))
        if rows.size == 0:
            return cls(0, 0, empty, empty)
        cols = np.flatnonzero(diff.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(box[0] + c0, box[1] + r0, before[r0:r1, c0:c1].copy(), after[r0:r1, c0:c1].copy())


def stroke_mask(
    points: Sequence[tuple[float, float]], radius: float, image_size: tuple[int, int]
) -> CroppedMask:
    """The pixels whose centre lies within ``radius`` of the polyline through ``points`` (image
    coordinates ``(x, y)``): a round brush dragged along the path. One point makes a disc."""
    if not points or radius <= 0:
        return empty_mask(image_size)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    box = (
        int(np.floor(pts[:, 0].min() - radius)),
        int(np.floor(pts[:, 1].min() - radius)),
        int(np.ceil(pts[:, 0].max() + radius)) + 1,
        int(np.ceil(pts[:, 1].max() + radius)) + 1,
    )
    x0, y0, x1, y1 = _clip_box(box, image_size)
    if x1 <= x0 or y1 <= y0:
        return empty_mask(image_size)
    pixels = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    starts, ends = (pts[:-1], pts[1:]) if len(pts) > 1 else (pts, pts)
    for a, b in zip(starts, ends, strict=True):
        _paint_segment(pixels, x0, y0, a, b, radius)
    return tighten(x0, y0, pixels, image_size)


def _paint_segment(pixels: np.ndarray, x0: int, y0: int, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """Set the pixels of ``pixels`` (origin ``(x0, y0)``) whose centre is within ``radius`` of ``ab``."""
    h, w = pixels.shape
    sx0 = max(int(np.floor(min(a[0], b[0]) - radius)) - x0, 0)
    sy0 = max(int(np.floor(min(a[1], b[1]) - radius)) - y0, 0)
    sx1 = min(int(np.ceil(max(a[0], b[0]) + radius)) + 1 - x0, w)
    sy1 = min(int(np.ceil(max(a[1], b[1]) + radius)) + 1 - y0, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return
    xs = np.arange(sx0, sx1, dtype=np.float64) + x0 + 0.5
    ys = (np.arange(sy0, sy1, dtype=np.float64) + y0 + 0.5)[:, None]
    d = b - a
    length2 = float(d @ d)
    if length2 == 0.0:
        t = 0.0
    else:
        t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / length2, 0.0, 1.0)
    dx, dy = xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1])
    pixels[sy0:sy1, sx0:sx1] |= dx * dx + dy * dy <= radius * radius


def polygon_mask(points: Sequence[tuple[float, float]], image_size: tuple[int, int]) -> CroppedMask:
    """The pixels whose centre lies inside the closed polygon ``points`` (image coordinates, even-odd
    rule), clipped to the image. Fewer than 3 points give an empty mask."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return empty_mask(image_size)
    box = (
        int(np.floor(pts[:, 0].min())),
        int(np.floor(pts[:, 1].min())),
        int(np.ceil(pts[:, 0].max())) + 1,
        int(np.ceil(pts[:, 1].max())) + 1,
    )
    x0, y0, x1, y1 = _clip_box(box, image_size)
    if x1 <= x0 or y1 <= y0:
        return empty_mask(image_size)
    a, b = pts, np.roll(pts, -1, axis=0)
    yc = (np.arange(y0, y1, dtype=np.float64) + 0.5)[:, None]  # (R, 1) row centres
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    crosses = (yc >= lo) & (yc < hi)  # half-open, so a vertex on the scanline counts once
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = a[:, 0] + (yc - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    x_cross = np.where(crosses, x_cross, float(x0))  # rows an edge does not cross: unused, keep finite
    # A pixel is inside when an odd number of crossings lie left of (or on) its centre x + 0.5.
    first_inside = np.clip(np.ceil(x_cross - 0.5).astype(np.int64) - x0, 0, x1 - x0)
    rows, edges = np.nonzero(crosses)
    toggles = np.zeros((y1 - y0, x1 - x0 + 1), dtype=np.int32)
    np.add.at(toggles, (rows, first_inside[rows, edges]), 1)
    pixels = (np.cumsum(toggles[:, :-1], axis=1) % 2).astype(bool)
    return tighten(x0, y0, pixels, image_size)


def fill_holes(mask: CroppedMask) -> CroppedMask:
    """``mask`` with every background region that does not touch the crop's border filled."""
    if mask.area == 0:
        return mask
    padded = np.pad(mask.mask, 1).astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)  # fills the outside background; holes stay 0
    filled = padded.astype(bool) | (flood == 0)
    return tighten(mask.x0, mask.y0, filled[1:-1, 1:-1], mask.image_size)


def merge(masks: Sequence[CroppedMask]) -> CroppedMask:
    """The union of masks of one image."""
    if not masks:
        raise ValueError("merge needs at least one mask")
    size = masks[0].image_size
    if any(m.image_size != size for m in masks):
        raise ValueError("merge needs masks of the same image")
    box = union_box(*(m.crop_box for m in masks))
    if box is None:
        return empty_mask(size)
    pixels = np.zeros((box[3] - box[1], box[2] - box[0]), dtype=bool)
    for m in masks:
        x0, y0, x1, y1 = m.crop_box
        pixels[y0 - box[1] : y1 - box[1], x0 - box[0] : x1 - box[0]] |= m.mask
    return tighten(box[0], box[1], pixels, size)


def split(mask: CroppedMask) -> list[CroppedMask]:
    """The 8-connected parts of ``mask`` (largest first); holes stay holes in each part."""
    if mask.area == 0:
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, count), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    parts = []
    for i in order:
        x, y, w, h = (int(v) for v in stats[i, :4])
        parts.append(
            CroppedMask(
                mask.x0 + x,
                mask.y0 + y,
                np.ascontiguousarray(labels[y : y + h, x : x + w] == i),
                mask.image_size,
            )
        )
    return parts
