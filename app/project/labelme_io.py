"""Read labelme JSON files (polygons, rectangles, circles, masks) as instance masks. Qt-free, no torch.

labelme writes one JSON per image: ``imagePath`` (relative to the JSON file), ``imageHeight`` /
``imageWidth`` and ``shapes``, each with a ``label``, ``points`` ``[[x, y], ...]``, a ``shape_type`` and
an optional ``group_id``. Shapes with the same label and ``group_id`` are one instance (labelme's way of
drawing an object in several parts). Shapes are rasterised the way labelme itself does (PIL's polygon /
rectangle / ellipse fill, outline included), so an instance has the pixels labelme would export for it.
``line``, ``linestrip`` and ``point`` shapes have no area and are skipped with a note in the report.
Nothing outside the images folder is read: an ``imagePath`` that leads out of it is skipped.

Two labels are not classes, as in labelme's own ``labelme2coco``: ``__ignore__`` shapes are regions not to
judge, read as crowd regions of the image (COCO's ``iscrowd: 1``), and ``_background_`` shapes are the
background, skipped with a note in the report. A file with no object shapes says the image holds none.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskrcnn_core.image_io import ImageReadError, image_size
from maskrcnn_core.paths import read_json
from maskrcnn_core.types import CroppedMask

AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
IGNORE_LABEL = "__ignore__"  # labelme's region not to judge: a crowd region
BACKGROUND_LABEL = "_background_"  # labelme's background: not a class


@dataclass(frozen=True, eq=False)
class LabelmeImage:
    """One labelme file's image (``file_name`` relative to the images folder), its instances and its
    crowd regions (the ``__ignore__`` shapes)."""

    file_name: str
    size: tuple[int, int]
    instances: tuple[tuple[str, CroppedMask], ...]  # (label, mask)
    crowd_regions: tuple[CroppedMask, ...] = ()


@dataclass
class LabelmeReport:
    """What was skipped and why, one line each."""

    source: str
    skipped: list[str] = field(default_factory=list)
    images: int = 0
    instances: int = 0
    crowd_regions: int = 0
    background_shapes: int = 0  # _background_ shapes: not a class, skipped

    def summary(self) -> str:
        head = (
            f"{self.source}: read {self.images} images, {self.instances} instances and "
            f"{self.crowd_regions} crowd regions ({IGNORE_LABEL}); skipped {len(self.skipped)} entries"
        )
        if self.background_shapes:
            head += f" and {self.background_shapes} {BACKGROUND_LABEL} shapes (the background is not a class)"
        return "\n".join([head, *(f"  skipped: {line}" for line in self.skipped)])


def is_labelme(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data


def labelme_files(path: Path) -> list[Path]:
    """``path`` itself, or the labelme JSON files directly inside a directory."""
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def read_labelme(json_path: Path, images_dir: Path, report: LabelmeReport) -> LabelmeImage | None:
    """The image and instances of one labelme file; problems go to ``report`` (``None``: nothing usable)."""
    name = json_path.name
    try:
        data = read_json(json_path)
    except ValueError as exc:
        report.skipped.append(f"{name}: not a readable JSON file ({exc})")
        return None
    if not is_labelme(data):
        report.skipped.append(f"{name}: not a labelme file (no 'shapes' and 'imagePath')")
        return None
    root = images_dir.resolve()
    image_path = str(data["imagePath"]).replace("\\", "/")
    if Path(image_path).is_absolute():
        report.skipped.append(f"{name}: imagePath {image_path!r} is absolute; it must be relative")
        return None
    path = (json_path.parent.resolve() / image_path).resolve()
    if not path.is_relative_to(root):
        report.skipped.append(f"{name}: imagePath {image_path!r} points outside the images folder {root}")
        return None
    if not path.is_file():
        report.skipped.append(f"{name}: image file missing: {path}")
        return None
    try:
        size = image_size(path)
    except ImageReadError as exc:
        report.skipped.append(f"{name}: image unreadable: {exc}")
        return None
    declared = (data.get("imageHeight"), data.get("imageWidth"))
    if all(isinstance(v, int) for v in declared) and declared != size:
        report.skipped.append(
            f"{name}: the file is {size[0]}x{size[1]} (HxW) but the JSON says {declared[0]}x{declared[1]}"
        )
        return None
    parts: dict[tuple, tuple[str, np.ndarray]] = {}
    for index, shape in enumerate(data["shapes"]):
        where = f"{name}: shape {index}"
        try:
            label, full = _shape_mask(shape, size)
        except ValueError as exc:
            report.skipped.append(f"{where}: {exc}")
            continue
        if label == BACKGROUND_LABEL:
            report.background_shapes += 1
            continue
        group = shape.get("group_id")
        key = (label, group) if group is not None else (label, None, index)
        if key in parts:
            parts[key][1].__ior__(full)
        else:
            parts[key] = (label, full)
    instances, crowd_regions = [], []
    for label, full in parts.values():
        mask = CroppedMask.from_full(full)
        if mask.area == 0:
            report.skipped.append(f"{name}: an instance of {label!r} covers no pixel of the image")
            continue
        if label == IGNORE_LABEL:
            crowd_regions.append(mask)
        else:
            instances.append((label, mask))
    report.images += 1
    report.instances += len(instances)
    report.crowd_regions += len(crowd_regions)
    return LabelmeImage(path.relative_to(root).as_posix(), size, tuple(instances), tuple(crowd_regions))


def _shape_mask(shape: object, size: tuple[int, int]) -> tuple[str, np.ndarray]:
    """``(label, full-image bool mask)`` of one shape, or ``ValueError`` saying why it is unusable."""
    if not isinstance(shape, dict):
        raise ValueError("not an object")
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"no label: {label!r}")
    kind = shape.get("shape_type") or "polygon"
    if kind not in AREA_SHAPES:
        raise ValueError(f"a {kind!r} shape has no area (only {', '.join(AREA_SHAPES)} are instances)")
    try:
        points = np.asarray(shape.get("points"), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(f"points must be [[x, y], ...], got {shape.get('points')!r:.60}") from None
    if not np.isfinite(points).all():
        raise ValueError("points hold NaN or infinite coordinates")
    height, width = size
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(x, y) for x, y in points.tolist()]
    if kind == "polygon":
        if len(xy) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(xy)}")
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle" or kind == "circle":
        if len(xy) != 2:
            raise ValueError(f"a {kind} needs 2 points, got {len(xy)}")
        if kind == "rectangle":
            (x0, y0), (x1, y1) = xy
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
        else:
            (cx, cy), (px, py) = xy
            r = float(np.hypot(px - cx, py - cy))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:  # mask: a PNG of the box spanned by the two points
        return label, _mask_shape(shape, xy, size)
    return label, np.array(canvas, dtype=bool)  # a writable copy: group parts are OR-ed into it


def _mask_shape(shape: dict, xy: list[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    encoded = shape.get("mask")
    if not isinstance(encoded, str) or len(xy) < 1:
        raise ValueError("a mask shape needs a base64 PNG 'mask' and its top-left point")
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as im:
            patch = np.asarray(im.convert("L")) > 0
    except (ValueError, OSError) as exc:
        raise ValueError(f"the mask is not a base64 PNG: {exc}") from None
    height, width = size
    x0, y0 = (int(round(v)) for v in xy[0])
    full = np.zeros(size, dtype=bool)
    ys, xs = (
        slice(max(y0, 0), min(y0 + patch.shape[0], height)),
        slice(max(x0, 0), min(x0 + patch.shape[1], width)),
    )
    if ys.stop > ys.start and xs.stop > xs.start:
        full[ys, xs] = patch[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return full
