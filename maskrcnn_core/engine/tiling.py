"""Tiled inference on large images: where the tiles go, which detections a tile keeps, how tiles merge.

A Mask R-CNN resizes every image to its training scale (the demo model's 192-256 px, COCO's 800-1333 px),
so on a 10,000-pixel scene an object a few dozen pixels wide shrinks to a pixel or two and is never
found. Tiled inference cuts the image into overlapping tiles run at the image's own scale (1:1, no resize),
then puts the detections back together:

- an instance touching an *inner* tile edge (an edge that is not the image border) is cut by it: it is
  dropped, because with an overlap at least as large as the largest object, a neighbouring tile holds it
  whole;
- an instance found whole by two tiles (it lies in their overlap) is one instance: duplicates are merged
  by the IoU of their *masks* (on the cropped masks, never full-image arrays), keeping the best-scoring
  one;
- an optional pass over the whole (resized) image finds objects larger than the overlap, which every tile
  cuts; its detections merge with the tiles' by the same rule.

numpy only (no torch): the Predictor runs the tiles, this module decides everything else, and the app's
settings import :class:`TileOptions` and its defaults from here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from maskrcnn_core.types import CroppedMask, Prediction, Uncertainty

#: ``auto``: tile an image the model would shrink by more than ``auto_factor``; ``on``: always; ``off``:
#: never.
TILE_MODES = ("auto", "on", "off")
DEFAULT_TILE_SIZE = 512
#: at least the largest object expected, so that some tile holds each object whole
DEFAULT_TILE_OVERLAP = 128
#: ``auto`` tiles an image the model's resize would shrink by more than this factor
DEFAULT_AUTO_FACTOR = 2.0
#: two detections of one label whose masks overlap by this IoU are one object
DEFAULT_MERGE_IOU = 0.5
#: a detection whose box comes this close (pixels) to an inner tile edge counts as cut by it
EDGE_MARGIN = 2


class TilingError(ValueError):
    """Tile options that cannot work (a tile no larger than its overlap, a mode that does not exist)."""


@dataclass(frozen=True)
class TileOptions:
    """How the Predictor tiles an image.

    ``size`` and ``overlap`` are in image pixels; ``auto_factor`` is how much larger than the model's
    training scale an image must be before ``auto`` tiles it; ``full_image_pass`` adds one pass over the
    whole image (resized, as without tiling) for objects larger than the overlap. It is on by default: a
    model trained at a photo's scale (COCO's 800 px) sees a 12-megapixel photo's people and cars whole only
    there, and the pass costs one untiled prediction.
    """

    mode: str = "auto"
    size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_TILE_OVERLAP
    auto_factor: float = DEFAULT_AUTO_FACTOR
    full_image_pass: bool = True
    merge_iou: float = DEFAULT_MERGE_IOU

    def __post_init__(self) -> None:
        if self.mode not in TILE_MODES:
            raise TilingError(f"tile mode must be one of {', '.join(TILE_MODES)}, got {self.mode!r}")
        if not isinstance(self.size, int) or self.size < 32:
            raise TilingError(f"tile size must be an integer of at least 32 pixels, got {self.size!r}")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise TilingError(f"tile overlap must be a non-negative integer, got {self.overlap!r}")
        if self.overlap >= self.size:
            raise TilingError(
                f"tile size {self.size} must be larger than the tile overlap {self.overlap} "
                "(the overlap should be at least the largest object)"
            )
        if not self.auto_factor >= 1.0:
            raise TilingError(f"the auto tiling factor must be at least 1, got {self.auto_factor!r}")
        if not 0.0 < self.merge_iou <= 1.0:
            raise TilingError(f"the merge IoU must be in (0, 1], got {self.merge_iou!r}")


@dataclass(frozen=True)
class Tile:
    """A tile's extent ``[x0, x1) x [y0, y1)`` in image pixels."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def resize_scale(image_size: tuple[int, int], min_size: int, max_size: int) -> float:
    """The factor the model's transform resizes an ``(H, W)`` image by (torchvision's rule: the short side
    to ``min_size`` unless the long side would pass ``max_size``)."""
    short, long = min(image_size), max(image_size)
    return min(min_size / short, max_size / long)


def should_tile(image_size: tuple[int, int], min_size: int, max_size: int, options: TileOptions) -> bool:
    """Whether ``options`` tiles an ``(H, W)`` image for a model trained at ``min_size`` / ``max_size``."""
    if options.mode == "off":
        return False
    if options.mode == "on":
        return True
    return 1.0 / resize_scale(image_size, min_size, max_size) > options.auto_factor


def tile_grid(image_size: tuple[int, int], size: int, overlap: int) -> list[Tile]:
    """Tiles of ``size`` covering an ``(H, W)`` image, neighbours overlapping by at least ``overlap``.

    Every tile has the full ``size`` (the last row and column are moved back to end at the image's edge,
    overlapping their neighbour more), so the tiles batch together; a side shorter than ``size`` gets one
    tile of that side's length. Row by row, top to bottom.
    """
    height, width = image_size
    if overlap >= size:
        raise TilingError(f"tile size {size} must be larger than the tile overlap {overlap}")
    ys, xs = _starts(height, size, overlap), _starts(width, size, overlap)
    return [Tile(x, y, min(x + size, width), min(y + size, height)) for y in ys for x in xs]


def _starts(length: int, size: int, overlap: int) -> list[int]:
    if length <= size:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size, step))
    starts.append(length - size)
    return starts


def box_region(boxes: np.ndarray, image_size: tuple[int, int], options: TileOptions) -> Tile:
    """The region a box prompt on a tiled image runs on, at the image's own scale like a tile: the boxes
    (xyxy, image pixels) with ``options.overlap`` of context on every side, at least a tile's size, inside
    the image."""
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x0, y0 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
    x1, y1 = float(boxes[:, 2].max()), float(boxes[:, 3].max())

    def span(low: float, high: float, length: int) -> tuple[int, int]:
        start, stop = math.floor(low) - options.overlap, math.ceil(high) + options.overlap
        short = options.size - (stop - start)
        if short > 0:
            start, stop = start - short // 2, stop + short - short // 2
        start, stop = max(0, start), min(length, stop)
        if stop - start < options.size:  # pushed against an image edge: grow the other way
            start, stop = (
                max(0, min(start, stop - options.size)),
                min(length, max(stop, start + options.size)),
            )
        return start, stop

    left, right = span(x0, x1, width)
    top, bottom = span(y0, y1, height)
    return Tile(left, top, right, bottom)


def whole_in_tile(boxes: np.ndarray, tile: Tile, image_size: tuple[int, int]) -> np.ndarray:
    """``(N,)`` bool: which of a tile's ``boxes`` (xyxy in tile pixels) touch none of its inner edges.

    An edge lying on the image border cuts nothing; a box within :data:`EDGE_MARGIN` pixels of any other
    edge is taken to run on past it.
    """
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    keep = np.ones(len(boxes), dtype=bool)
    if tile.x0 > 0:
        keep &= boxes[:, 0] > EDGE_MARGIN
    if tile.y0 > 0:
        keep &= boxes[:, 1] > EDGE_MARGIN
    if tile.x1 < width:
        keep &= boxes[:, 2] < tile.width - EDGE_MARGIN
    if tile.y1 < height:
        keep &= boxes[:, 3] < tile.height - EDGE_MARGIN
    return keep


def place_in_image(prediction: Prediction, tile: Tile, image_size: tuple[int, int]) -> Prediction:
    """A tile's prediction moved into the whole image's pixels (boxes and cropped masks shifted)."""
    boxes = prediction.boxes + np.array([tile.x0, tile.y0, tile.x0, tile.y0], dtype=np.float32)
    masks = tuple(CroppedMask(m.x0 + tile.x0, m.y0 + tile.y0, m.mask, image_size) for m in prediction.masks)
    return dataclasses.replace(prediction, image_size=image_size, boxes=boxes, masks=masks)


def concatenate(
    predictions: Sequence[Prediction], image_size: tuple[int, int], source: str | None
) -> Prediction:
    """One prediction holding every detection of ``predictions`` (all in one image's pixels), sorted by
    score high to low as a Prediction is."""
    empty = Prediction.failed(source, "")
    parts = [empty, *predictions]
    joined = Prediction(
        image_size=image_size,
        boxes=np.concatenate([p.boxes for p in parts]).astype(np.float32, copy=False),
        scores=np.concatenate([p.scores for p in parts]).astype(np.float32, copy=False),
        labels=np.concatenate([p.labels for p in parts]).astype(np.int64, copy=False),
        category_ids=np.concatenate([p.category_ids for p in parts]).astype(np.int64, copy=False),
        masks=tuple(m for p in predictions for m in p.masks),
        source=source,
        uncertainty=_joined_uncertainty(predictions),
    )
    return take(joined, np.argsort(-joined.scores, kind="stable"))


def _joined_uncertainty(predictions: Sequence[Prediction]) -> Uncertainty | None:
    """The tiles' uncertainties as one image's: the per-detection scores side by side, the image scored
    by its most uncertain tile (a large image is worth reviewing where any part of it is), the middling
    detections counted over all tiles. No pooled features: no single pass saw the whole image."""
    parts = [p.uncertainty for p in predictions]
    if not parts or any(u is None for u in parts):
        return None
    known = [u for u in parts if u is not None]
    return Uncertainty(
        np.concatenate([u.instance for u in known]),
        np.concatenate([u.mask_ambiguity for u in known]),
        np.concatenate([u.class_ambiguity for u in known]),
        max(u.image for u in known),
        sum(u.middling for u in known),
        None,
    )


def take(prediction: Prediction, indices: np.ndarray) -> Prediction:
    """The detections at ``indices`` (in that order)."""
    indices = np.asarray(indices, dtype=np.int64)
    uncertainty = prediction.uncertainty
    return dataclasses.replace(
        prediction,
        boxes=prediction.boxes[indices],
        scores=prediction.scores[indices],
        labels=prediction.labels[indices],
        category_ids=prediction.category_ids[indices],
        masks=tuple(prediction.masks[i] for i in indices),
        uncertainty=None if uncertainty is None else uncertainty.subset(indices),
    )


def mask_iou(a: CroppedMask, b: CroppedMask) -> float:
    """The IoU of two cropped masks of one image, computed on their crops' intersection only."""
    ax0, ay0, ax1, ay1 = a.crop_box
    bx0, by0, bx1, by1 = b.crop_box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    area_a, area_b = a.area, b.area
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = int(
        np.count_nonzero(
            a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
            & b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        )
    )
    union = area_a + area_b - inter
    return inter / union if union else 0.0


def merge_duplicates(prediction: Prediction, iou_thresh: float = DEFAULT_MERGE_IOU) -> Prediction:
    """One detection per object: of detections with one label whose masks overlap by ``iou_thresh`` or
    more, the best-scoring one is kept (its mask, box and score). Greedy, best score first, like NMS but
    on masks: two tiles' views of one object lie on the same pixels, where boxes of neighbouring small
    objects can overlap without their masks doing so."""
    n = len(prediction)
    if n < 2:
        return prediction
    order = np.argsort(-prediction.scores, kind="stable")
    boxes = prediction.boxes
    kept: list[int] = []
    suppressed = np.zeros(n, dtype=bool)
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        kept.append(int(i))
        rest = order[position + 1 :]
        rest = rest[~suppressed[rest] & (prediction.labels[rest] == prediction.labels[i])]
        if not len(rest):
            continue
        # only detections whose boxes meet can share pixels
        meets = (
            (boxes[rest, 0] < boxes[i, 2])
            & (boxes[rest, 2] > boxes[i, 0])
            & (boxes[rest, 1] < boxes[i, 3])
            & (boxes[rest, 3] > boxes[i, 1])
        )
        for j in rest[meets]:
            if mask_iou(prediction.masks[i], prediction.masks[j]) >= iou_thresh:
                suppressed[j] = True
    return take(prediction, np.array(kept, dtype=np.int64))


def rescale(prediction: Prediction, scale: float, image_size: tuple[int, int]) -> Prediction:
    """A prediction made on a copy of the image reduced by ``scale`` (reduced / full), brought to the
    ``(H, W)`` full image: boxes divided by ``scale``, each cropped mask enlarged over its box (nearest
    neighbour; the full-image pass is for large objects, whose outline this keeps to within a pixel of
    the reduced copy's)."""
    height, width = image_size
    boxes = prediction.boxes / np.float32(scale)
    boxes = np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float32))
    masks = []
    for m in prediction.masks:
        x0, y0, x1, y1 = m.crop_box
        fx0, fy0 = min(width - 1, int(x0 / scale)), min(height - 1, int(y0 / scale))
        fx1, fy1 = max(fx0 + 1, min(width, round(x1 / scale))), max(fy0 + 1, min(height, round(y1 / scale)))
        if m.mask.size:
            big = cv2.resize(m.mask.view(np.uint8), (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_NEAREST)
            masks.append(CroppedMask(fx0, fy0, big.astype(bool), image_size))
        else:
            masks.append(CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), image_size))
    return dataclasses.replace(prediction, image_size=image_size, boxes=boxes, masks=tuple(masks))
