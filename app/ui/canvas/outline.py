"""Outline geometry: a mask crop's contours and the outline path the canvas strokes around it.

Coordinates are original-image pixels (pixel ``(y, x)`` covers ``[x, x+1) x [y, y+1)``). An outline runs
through the centres of the mask's edge pixels, one closed polygon per contour (outer boundaries and
holes), simplified to within a tolerance: a large mask keeps a few dozen vertices instead of thousands,
which keeps the overlay of an image with many instances well under a frame to build. Under the odd-even
fill rule (the path's own), the inside of an unsimplified outline is the mask less half a pixel along its
edges: holes are outside.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QByteArray, QDataStream
from PySide6.QtGui import QPainterPath

# Contours are simplified to within this many pixels at full resolution: under a screen pixel at any zoom
# that shows single pixels, so the outline looks traced pixel by pixel.
FULL_RESOLUTION_TOLERANCE = 0.7

# QPainterPath's QDataStream form: element count, then (type, x, y) per element, the index where the last
# subpath starts and the fill rule. Filled in by numpy for a whole batch of paths, read back by Qt one path
# after the other from one stream: a path costs no Python loop over its vertices.
_PATH_ELEMENT = np.dtype([("type", "<i4"), ("xy", "<f8", (2,))])
_PATH_INTS = struct.Struct("<i")
_PATH_TAIL = struct.Struct("<ii")
_MOVE_TO, _LINE_TO = 0, 1
_ODD_EVEN_FILL = 0


def contours(mask: np.ndarray) -> Sequence[np.ndarray]:
    """The mask's contours, holes included, in crop pixels (OpenCV's ``(n, 1, 2)`` int32 arrays of pixel
    ``(x, y)``, traced through edge-pixel centres)."""
    found, _ = cv2.findContours(
        np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    return found


def outline_path(
    mask: np.ndarray, x0: int, y0: int, tolerance: float = FULL_RESOLUTION_TOLERANCE
) -> QPainterPath:
    """The outline of the mask crop at ``(x0, y0)`` as a path in image pixels: see :func:`outline_paths`."""
    return outline_paths([(contours(mask), x0, y0)], tolerance)[0]


def outline_paths(
    shapes: Sequence[tuple[Sequence[np.ndarray], int, int]], tolerance: float = FULL_RESOLUTION_TOLERANCE
) -> list[QPainterPath]:
    """For each ``(contours, x0, y0)`` of a mask crop at ``(x0, y0)``, its outline as a path in image
    pixels: one closed polygon per contour (``cv2.approxPolyDP`` within ``tolerance`` pixels), exactly as
    ``addPolygon`` + ``closeSubpath`` would make it. A contour that simplifies to one point is left out (it
    would stroke nothing), so a one-pixel mask has an empty outline. Building many paths in one call is
    much faster than one call per path.
    """
    polygons: list[np.ndarray] = []  # all paths' polygons, each closed (its first point repeated)
    origins: list[tuple[float, float]] = []  # per polygon: where its pixel (0, 0)'s centre lies
    layout: list[tuple[int, int, int]] = []  # per path: (first element, element count, last subpath start)
    count = 0
    for shape_contours, x0, y0 in shapes:
        first = last = count
        for contour in shape_contours:
            polygon = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
            if len(polygon) < 2:
                continue  # one point draws nothing (addPolygon + closeSubpath leave a lone move)
            polygons.append(np.concatenate((polygon, polygon[:1])))
            origins.append((x0 + 0.5, y0 + 0.5))
            last = count
            count += len(polygon) + 1
        layout.append((first, count - first, last - first))
    if not polygons:
        return [QPainterPath() for _ in shapes]
    sizes = [len(p) for p in polygons]
    elements = np.empty(count, dtype=_PATH_ELEMENT)
    xy = elements["xy"]
    xy[:] = np.concatenate(polygons)
    xy += np.repeat(np.array(origins), sizes, axis=0)
    elements["type"] = _LINE_TO
    elements["type"][np.cumsum([0, *sizes[:-1]])] = _MOVE_TO
    raw = elements.tobytes()
    size = _PATH_ELEMENT.itemsize
    parts: list[bytes] = []
    for first, n, last in layout:
        if n:
            tail = _PATH_TAIL.pack(last, _ODD_EVEN_FILL)
            parts += (_PATH_INTS.pack(n), raw[first * size : (first + n) * size], tail)
        else:
            parts.append(_PATH_INTS.pack(0))  # the empty path
    data = QByteArray(b"".join(parts))  # kept referenced: the stream reads from it
    stream = QDataStream(data)
    stream.setByteOrder(QDataStream.ByteOrder.LittleEndian)
    paths = []
    for _ in shapes:
        path = QPainterPath()
        stream >> path
        paths.append(path)
    return paths
