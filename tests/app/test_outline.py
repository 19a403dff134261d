"""The outline geometry: a mask crop's contours and the path the canvas strokes around it, checked against
OpenCV's contours and against the pixels the filled path covers, on masks with holes and several parts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPainterPath

from app.ui.canvas.outline import FULL_RESOLUTION_TOLERANCE, contours, outline_path, outline_paths

X0, Y0 = 13, 7  # where the crops lie in the image: outlines are in image pixels


def _parts_with_holes() -> np.ndarray:
    """Three parts: a disc with a round hole, a rectangle with two square holes (one touching a corner of
    the other diagonally), and a slanted line one pixel wide."""
    mask = np.zeros((90, 160), np.uint8)
    cv2.circle(mask, (40, 40), 32, 1, -1)
    cv2.circle(mask, (40, 40), 12, 0, -1)
    mask[10:80, 85:150] = 1
    mask[20:30, 95:105] = 0
    mask[30:45, 105:120] = 0
    cv2.line(mask, (5, 85), (70, 80), 1, 1)
    return mask.astype(bool)


def _speckle() -> np.ndarray:
    """Many small parts and holes, of every shape a random field makes."""
    field = np.random.default_rng(3).random((40, 60)) > 0.55
    return cv2.morphologyEx(field.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2, 2), np.uint8)).astype(bool)


MASKS = {"parts_with_holes": _parts_with_holes(), "speckle": _speckle()}


def _cv2_contours(mask: np.ndarray) -> list[np.ndarray]:
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) for c in found]


def _polygons(path: QPainterPath) -> list[np.ndarray]:
    """The path's closed polygons, each without its repeated first point."""
    out = []
    for polygon in path.toSubpathPolygons():
        points = np.array([(p.x(), p.y()) for p in polygon])
        assert np.array_equal(points[0], points[-1])  # closed
        out.append(points[:-1])
    return out


def _distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Each point's distance to the closed polygon's edges."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    return np.linalg.norm(points[:, None] - (a + t[..., None] * ab), axis=-1).min(axis=1)


def _contained(path: QPainterPath, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether the filled path contains the centres of the crop pixels ``(rows, cols)``."""
    return np.array(
        [path.contains(QPointF(X0 + c + 0.5, Y0 + r + 0.5)) for r, c in zip(rows, cols, strict=True)]
    )


def test_contours_are_opencvs_holes_included():
    mask = MASKS["parts_with_holes"]
    found = [c.reshape(-1, 2) for c in contours(mask)]
    expected = _cv2_contours(mask)
    assert len(found) == len(expected) == 3 + 1 + 2  # three outer boundaries, three holes
    for ours, theirs in zip(found, expected, strict=True):
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("name", list(MASKS))
def test_unsimplified_outline_runs_through_every_contour_point(name):
    mask = MASKS[name]
    path = outline_path(mask, X0, Y0, tolerance=0.0)
    assert path.fillRule() == Qt.FillRule.OddEvenFill
    expected = [c for c in _cv2_contours(mask) if len(c) > 1]  # a lone point strokes nothing
    polygons = _polygons(path)
    assert len(polygons) == len(expected)
    for polygon, contour in zip(polygons, expected, strict=True):
        centres = contour + (X0 + 0.5, Y0 + 0.5)
        # Vertices are contour points (pixel centres, in image pixels), and every contour point is on it.
        assert {tuple(p) for p in polygon.tolist()} <= {tuple(p) for p in centres.tolist()}
        assert _distance_to_polygon(centres, polygon).max() < 1e-9


@pytest.mark.parametrize("name", list(MASKS))
def test_filled_unsimplified_outline_covers_the_mask_less_its_edge(name):
    mask = MASKS[name]
    path = outline_path(mask, X0, Y0, tolerance=0.0)
    # Pixels whose eight neighbours are all in the mask are inside; pixels off the mask, holes included,
    # are outside. Edge pixels have their centre on the outline itself.
    interior = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0).astype(bool)
    rows, cols = np.nonzero(interior)
    assert interior.any() and _contained(path, rows, cols).all()
    rows, cols = np.nonzero(~mask)
    assert not _contained(path, rows, cols).any()
    if name == "parts_with_holes":
        assert not path.contains(QPointF(X0 + 40.5, Y0 + 40.5))  # the disc's hole


@pytest.mark.parametrize("name", list(MASKS))
def test_simplified_outline_stays_within_its_tolerance(name):
    mask = MASKS[name].astype(np.uint8)
    path = outline_path(mask.astype(bool), X0, Y0)  # the canvas's full-resolution outline
    # Pixels deeper than the tolerance on either side of the edge keep their side: the filled path
    # differs from the mask only along its outline.
    margin = FULL_RESOLUTION_TOLERANCE + 1.0
    framed = np.pad(mask, 1)  # the crop's surroundings are off the mask
    inside_depth = cv2.distanceTransform(framed, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    outside_depth = cv2.distanceTransform(1 - framed, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    rows, cols = np.nonzero(inside_depth > margin)
    assert len(rows) and _contained(path, rows, cols).all()
    rows, cols = np.nonzero(outside_depth > margin)
    assert len(rows) and not _contained(path, rows, cols).any()
    fine = outline_path(mask.astype(bool), X0, Y0, tolerance=0.0)
    assert 0 < path.elementCount() < fine.elementCount()


def test_one_batch_makes_the_paths_one_call_each_would():
    masks = [MASKS["parts_with_holes"], np.zeros((4, 4), bool), np.ones((1, 1), bool), MASKS["speckle"]]
    origins = [(X0, Y0), (0, 0), (3, 3), (200, 100)]
    batch = outline_paths([(contours(m), x, y) for m, (x, y) in zip(masks, origins, strict=True)])
    assert len(batch) == len(masks)
    for path, mask, (x, y) in zip(batch, masks, origins, strict=True):
        single = outline_path(mask, x, y)
        assert [(e.type, e.x, e.y) for e in map(path.elementAt, range(path.elementCount()))] == [
            (e.type, e.x, e.y) for e in map(single.elementAt, range(single.elementCount()))
        ]
    assert batch[1].isEmpty() and batch[2].isEmpty()  # nothing, and a single pixel: nothing to stroke
    assert not batch[0].isEmpty() and not batch[3].isEmpty()
