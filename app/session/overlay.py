"""What the canvas draws for one instance, built from the store's records. No widgets here."""

from __future__ import annotations

import colorsys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtGui import QColor

from app.project.records import CategoryRecord, InstanceRecord, Provenance
from app.project.review_queue import UNSURE_INSTANCE
from app.project.settings import COLOUR_BY_CATEGORY, DEFAULT_OVERLAY_COLOUR
from app.project.truth import is_crowd_region, is_untouched_prediction
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask

_GOLDEN = 0.618033988749895
# A crowd region is not an object: drawn in one neutral grey (with a dashed outline and a "crowd" caption)
# so it never reads as one more coloured instance.
CROWD_COLOR = QColor(150, 150, 150)
# Decoded masks by (size, RLE counts): redrawing after an edit decodes only the edited instance, and the
# canvas recognises unchanged instances by mask identity. Bounded, so a long session does not grow it.
_DECODED: OrderedDict[tuple, CroppedMask] = OrderedDict()
_DECODED_MAX_BYTES = 256 * 2**20
_decoded_bytes = 0


@dataclass(frozen=True, eq=False)
class Overlay:
    """One instance on the canvas: ``mask`` (cropped, original pixels), ``box`` xyxy, its colour and
    caption parts."""

    instance_id: int
    mask: CroppedMask
    box: tuple[float, float, float, float]
    color: QColor
    category_name: str
    score: float | None
    provenance: Provenance
    crowd: bool = False  # a crowd region (see app.project.truth): kept and exported, not an object
    unsure: bool = False  # a prediction the model was unsure of (the review queue's rule): look closer


def instance_color(instance_id: int) -> QColor:
    """A colour per instance, stable across sessions, neighbours far apart in hue (golden-ratio steps)."""
    hue = (instance_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return QColor(int(r * 255), int(g * 255), int(b * 255))


def decoded(rle: dict) -> CroppedMask:
    """``rle_to_mask(rle)``, cached (the result is shared: never modify it in place)."""
    counts = rle["counts"]
    key = (tuple(rle["size"]), counts if isinstance(counts, str | bytes) else tuple(counts))
    global _decoded_bytes
    mask = _DECODED.get(key)
    if mask is None:
        mask = _DECODED[key] = rle_to_mask(rle)
        _decoded_bytes += mask.mask.nbytes
        while _decoded_bytes > _DECODED_MAX_BYTES and len(_DECODED) > 1:
            _decoded_bytes -= _DECODED.popitem(last=False)[1].mask.nbytes
    else:
        _DECODED.move_to_end(key)
    return mask


def build_overlays(
    instances: Sequence[InstanceRecord],
    categories: dict[int, CategoryRecord],
    colour_by: str = DEFAULT_OVERLAY_COLOUR,
    uncertainties: Mapping[int, float] | None = None,
) -> list[Overlay]:
    """Decode each instance's RLE into a cropped mask and pick its colour and caption. ``colour_by`` is
    the project's ``overlay_colour`` setting: ``"category"`` paints each instance in its category's
    colour (an instance whose category is unknown keeps its own hue), ``"instance"`` each in its own.
    ``uncertainties`` (``{instance_id: 0..1}``) marks the untouched predictions the model was unsure of."""
    uncertainties = uncertainties or {}
    overlays = []
    for record in instances:
        category = categories.get(record.category_id)
        by_category = colour_by == COLOUR_BY_CATEGORY and category is not None
        crowd = is_crowd_region(record)
        if crowd:
            color = CROWD_COLOR
        elif by_category and category:
            color = QColor(category.color)
        else:
            color = instance_color(record.id)
        overlays.append(
            Overlay(
                instance_id=record.id,
                mask=decoded(record.rle),
                box=record.box,
                color=color,
                category_name=category.name if category else f"category {record.category_id}",
                score=record.score if is_untouched_prediction(record) else None,
                provenance=record.provenance,
                crowd=crowd,
                unsure=is_untouched_prediction(record)
                and uncertainties.get(record.id, 0.0) >= UNSURE_INSTANCE,
            )
        )
    return overlays
