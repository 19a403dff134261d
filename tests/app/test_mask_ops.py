"""Mask editing helpers on cropped masks: exact pixel semantics (pixel centres), holes and parts kept."""

from __future__ import annotations

import numpy as np
import pytest

from app.project.mask_ops import (
    MaskDelta,
    combine,
    fill_holes,
    instance_box,
    merge,
    paste,
    polygon_mask,
    split,
    stroke_mask,
)
from maskrcnn_core.types import CroppedMask

SIZE = (40, 50)


def _full(mask: CroppedMask) -> np.ndarray:
    return mask.to_full()


def test_polygon_covers_pixels_whose_centre_is_inside():
    square = polygon_mask([(10, 10), (20, 10), (20, 20), (10, 20)], SIZE)
    assert square.crop_box == (10, 10, 20, 20) and square.area == 100
    triangle = polygon_mask([(0, 0), (10, 0), (0, 10)], SIZE)
    ys, xs = np.nonzero(_full(triangle))
    assert ((xs + 0.5) + (ys + 0.5) < 10).all() and triangle.area == 45
    clipped = polygon_mask([(-5, -5), (100, -5), (100, 100), (-5, 100)], SIZE)
    assert clipped.area == SIZE[0] * SIZE[1]
    assert polygon_mask([(1, 1), (5, 5)], SIZE).area == 0


def test_stroke_is_a_round_brush_along_the_path():
    disc = stroke_mask([(20.0, 20.0)], 5.0, SIZE)
    ys, xs = np.nonzero(_full(disc))
    assert ((xs + 0.5 - 20) ** 2 + (ys + 0.5 - 20) ** 2 <= 25).all()
    assert disc.area == pytest.approx(np.pi * 25, rel=0.15)
    line = stroke_mask([(5.0, 5.5), (30.0, 5.5)], 1.0, SIZE)
    assert line.crop_box == (4, 4, 31, 7)
    edge = stroke_mask([(0.0, 0.0)], 3.0, SIZE)  # clipped to the image
    assert edge.x0 == 0 and edge.y0 == 0


def test_delta_round_trip_and_combine():
    base = polygon_mask([(5, 5), (25, 5), (25, 25), (5, 25)], SIZE)
    stroke = stroke_mask([(25.0, 15.0), (45.0, 15.0)], 3.0, SIZE)
    added = combine(base, stroke, add=True)
    erased = combine(base, stroke, add=False)
    assert added.area > base.area > erased.area
    for new in (added, erased):
        delta = MaskDelta.between(base, new)
        assert np.array_equal(_full(delta.apply(base)), _full(new))
        assert np.array_equal(_full(delta.apply(new, forward=False)), _full(base))
    assert MaskDelta.between(base, base).changed == 0


def test_fill_holes_merge_split_keep_holes_and_parts():
    ring = combine(
        polygon_mask([(5, 5), (25, 5), (25, 25), (5, 25)], SIZE),
        polygon_mask([(10, 10), (20, 10), (20, 20), (10, 20)], SIZE),
        add=False,
    )
    assert ring.area == 400 - 100
    assert fill_holes(ring).area == 400
    other = polygon_mask([(30, 30), (40, 30), (40, 35), (30, 35)], SIZE)
    both = merge([ring, other])
    assert both.area == ring.area + other.area
    parts = split(both)
    assert [p.area for p in parts] == [ring.area, other.area]
    assert np.array_equal(_full(parts[0]), _full(ring))  # the hole stays a hole
    assert paste(both, 0, 0, np.zeros((40, 50), dtype=bool)).area == 0


def test_instance_box_is_the_tight_box_of_the_pixels_and_refuses_an_empty_mask():
    pixels = np.zeros((6, 8), dtype=bool)
    pixels[2:4, 3:7] = True  # a crop with empty margins, placed at (5, 10)
    box = instance_box(CroppedMask(x0=5, y0=10, mask=pixels, image_size=SIZE))
    assert box == (8.0, 12.0, 12.0, 14.0) and all(type(v) is float for v in box)
    with pytest.raises(ValueError, match="at least one mask pixel"):
        instance_box(CroppedMask(x0=0, y0=0, mask=np.zeros((3, 3), dtype=bool), image_size=SIZE))
