"""Tiled inference for the Predictor: read a large image a tile at a time, run the tiles in batches at
their own scale, keep each tile's whole instances and merge the tiles (rules in
:mod:`maskrcnn_core.engine.tiling`).

The Predictor hands over how it runs a list of arrays (:data:`DetectArrays`), so this module needs no
torch of its own; a tiled TIFF is read through :func:`maskrcnn_core.image_io.open_regions`, so only the
tiles in the current batch are ever decoded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import cv2
import numpy as np

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.engine.tiling import (
    TileOptions,
    concatenate,
    merge_duplicates,
    place_in_image,
    rescale,
    should_tile,
    take,
    tile_grid,
    whole_in_tile,
)
from maskrcnn_core.image_io import (
    TILED_MAX_PIXELS,
    ImageReadError,
    ImageRegions,
    ImageTooLargeError,
    image_size,
    open_regions,
    read_image_reduced,
    to_rgb_uint8,
)
from maskrcnn_core.types import Prediction

log = logging.getLogger(__name__)

#: a detection at least this confident that a tile edge cuts counts for the too-small-overlap warning
CUT_WARNING_SCORE = 0.5

#: runs a batch of ``(H, W, 3)`` uint8 images: at their own scale (``True``) or resized as usual
DetectArrays = Callable[[list[np.ndarray], bool], list[Prediction]]


@dataclass
class TiledImage:
    """An image the Predictor runs tile by tile: where it comes from and how its regions are read."""

    index: int
    source: str | None
    options: TileOptions
    model_scale: tuple[int, int]  # the model's inference (min_size, max_size)
    regions: ImageRegions | None = None  # given by the caller (its to close), else opened for the run
    array: np.ndarray | None = None  # an in-memory image


def open_tiled(
    index: int,
    source: str | os.PathLike | np.ndarray | ImageRegions,
    options: TileOptions,
    model_scale: tuple[int, int],
) -> TiledImage | Prediction | None:
    """A :class:`TiledImage` when ``options`` tile this image, else ``None`` (also for a file whose header
    cannot be read: the untiled path then reports it in its own words); ``Prediction.failed`` for an image
    larger than even the tiled paths serve."""
    if isinstance(source, ImageRegions):
        if should_tile(source.size, *model_scale, options):
            return TiledImage(index, source.path, options, model_scale, regions=source)
        return None
    if isinstance(source, np.ndarray):
        array = to_rgb_uint8(source)
        if should_tile(array.shape[:2], *model_scale, options):
            return TiledImage(index, None, options, model_scale, array=array)
        return None
    name = os.fspath(source)
    try:
        size = image_size(name, max_pixels=TILED_MAX_PIXELS)
    except ImageTooLargeError as exc:
        return Prediction.failed(name, str(exc))
    except ImageReadError:
        return None
    if not should_tile(size, *model_scale, options):
        return None
    return TiledImage(index, name, options, model_scale)


def open_image_regions(image: TiledImage) -> ImageRegions:
    """How ``image`` is read: the regions its caller gave, its array, or its file opened for region reads
    (close what this opened; the caller's own regions stay open). Raises ``ImageReadError``."""
    if image.regions is not None:
        return image.regions
    if image.array is not None:
        return ImageRegions(image.array)
    return open_regions(image.source or "")


def run_tiled(
    image: TiledImage,
    batch_size: int,
    detect: DetectArrays,
    cancel: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Prediction | None:
    """The image's prediction from its tiles (and the full-image pass when asked for); ``None`` when
    ``cancel`` stopped it part way; ``Prediction.failed`` for a file that cannot be read.
    ``progress(tiles done, tiles)`` is called after each batch of tiles."""
    try:
        regions = open_image_regions(image)
    except ImageReadError as exc:
        return Prediction.failed(image.source, str(exc))
    options = image.options
    with nullcontext(regions) if regions is image.regions else regions:
        size = regions.size
        tiles = tile_grid(size, options.size, options.overlap)
        parts: list[Prediction] = []
        largest_cut = 0.0  # the largest confident detection an inner tile edge cut (pixels, its longer side)
        for start in range(0, len(tiles), batch_size):
            if cancel is not None and cancel.cancelled:
                return None
            group = tiles[start : start + batch_size]
            try:
                arrays = [regions.read(t.x0, t.y0, t.x1, t.y1) for t in group]
            except ImageReadError as exc:
                return Prediction.failed(image.source, str(exc))
            for tile, prediction in zip(group, detect(arrays, True), strict=True):
                kept = whole_in_tile(prediction.boxes, tile, size)
                parts.append(place_in_image(take(prediction, np.flatnonzero(kept)), tile, size))
                cut = prediction.boxes[~kept & (prediction.scores >= CUT_WARNING_SCORE)]
                if len(cut):
                    largest_cut = max(largest_cut, float((cut[:, 2:] - cut[:, :2]).max()))
            if progress is not None:
                progress(start + len(group), len(tiles))
        if options.full_image_pass:
            try:
                parts.append(_full_image_pass(image, regions, detect))
            except ImageReadError as exc:
                return Prediction.failed(image.source, str(exc))
        elif largest_cut >= options.overlap:
            # a cut object at least the overlap wide may be cut by every tile that sees it: found by none
            log.warning(
                "%s: objects up to %d px were cut by tile edges, larger than the %d px tile overlap, and the "
                "full-image pass is off: such objects may be missing; raise the overlap (--tile-overlap) or "
                "keep the full-image pass",
                image.source or "image",
                round(largest_cut),
                options.overlap,
            )
    return merge_duplicates(concatenate(parts, size, image.source), options.merge_iou)


def _full_image_pass(image: TiledImage, regions: ImageRegions, detect: DetectArrays) -> Prediction:
    """The whole image at the model's own scale (as without tiling), read reduced: for objects larger
    than the overlap, which every tile cuts."""
    size = regions.size
    longest = image.model_scale[1]
    if image.regions is not None:
        reduced, scale = image.regions.read_reduced(longest)
    elif image.array is not None:
        scale = min(1.0, longest / max(size))
        reduced_size = (max(1, round(size[1] * scale)), max(1, round(size[0] * scale)))
        reduced = cv2.resize(image.array, reduced_size, interpolation=cv2.INTER_AREA)
        scale = reduced_size[0] / size[1]
    else:
        reduced, scale = read_image_reduced(image.source or "", longest)
    (prediction,) = detect([reduced], False)
    return rescale(prediction, scale, size)
