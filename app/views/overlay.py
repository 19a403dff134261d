"""What the canvas draws for one instance, built from the store's records. No widgets here."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtGui import QColor

from app.model_types import CategoryRecord, InstanceRecord, Provenance
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask

_GOLDEN = 0.618033988749895


@dataclass(frozen=True, eq=False)
class Overlay:
    """One instance on the canvas: ``mask`` (cropped, original pixels), ``box`` xyxy, its colour and
    caption parts."""

    instance_id: int
    mask: CroppedMask
    box: tuple[float, float, float, float]
    color: QColor
    label: str
    score: float | None
    provenance: Provenance


def instance_color(instance_id: int) -> QColor:
    """A colour per instance, stable across sessions, neighbours far apart in hue (golden-ratio steps)."""
    hue = (instance_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return QColor(int(r * 255), int(g * 255), int(b * 255))


def build_overlays(
    instances: Sequence[InstanceRecord], categories: dict[int, CategoryRecord]
) -> list[Overlay]:
    """Decode each instance's RLE into a cropped mask and pick its colour and caption."""
    overlays = []
    for record in instances:
        category = categories.get(record.category_id)
        overlays.append(
            Overlay(
                instance_id=record.id,
                mask=rle_to_mask(record.rle),
                box=record.box,
                color=instance_color(record.id),
                label=category.name if category else f"category {record.category_id}",
                score=record.score if record.provenance is Provenance.PREDICTED else None,
                provenance=record.provenance,
            )
        )
    return overlays
