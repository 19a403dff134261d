"""Read, validate and write COCO instance-segmentation files (numpy + pycocotools; no torch).

:func:`load_coco` checks the raw JSON itself before anything reaches pycocotools, because pycocotools
answers a malformed file with ``KeyError``/``AssertionError`` (or, for a short compressed RLE, with a
mask of uninitialised memory). What cannot be used is reported in a :class:`ValidationReport`:

- **fatal** (nothing is loaded; :class:`CocoValidationError` is raised): not JSON, not an object, a
  missing ``images``/``annotations``/``categories`` list, an image or category without an integer id,
  duplicate image or category ids, an id wider than 64 bits, a category name used twice, one file
  listed under two image ids, no categories, no images folder.
- **skipped** (left out and counted): an annotation with an unknown image or category id, a duplicate
  annotation id, a polygon of fewer than 3 points or an odd number of coordinates, an RLE of the wrong
  size, an empty mask; an image whose file is missing, unreadable, of another size than the JSON says,
  or named by an absolute path or one that climbs out of ``images_dir`` (nothing outside it is read).
- **warning** (loaded): a bbox outside the image (clipped) or disagreeing with the mask (the mask wins).

Segmentations are checked and decoded with :mod:`maskrcnn_core.masks`, then kept as compressed RLE (a
few hundred bytes each) and decoded again on use, so tens of thousands of annotations load in seconds
and fit in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from maskrcnn_core.atomic import atomic_write
from maskrcnn_core.image_io import ImageReadError, image_size
from maskrcnn_core.masks import (
    InvalidSegmentationError,
    mask_bbox_xywh,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    rle_to_mask,
    segmentation_to_mask,
)
from maskrcnn_core.paths import JsonFileError, read_json, unreadable_reason
from maskrcnn_core.types import Category, ClassMap, CroppedMask, Prediction

Severity = Literal["fatal", "skipped", "warning"]

#: A bbox edge may differ from the mask's box by this many pixels plus ``BBOX_RELATIVE_TOLERANCE`` of
#: the box side before a warning: polygons rasterise to whole pixels, so a 1-2 px difference is normal.
BBOX_PIXEL_TOLERANCE = 2.0
BBOX_RELATIVE_TOLERANCE = 0.1


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a COCO file, with the image and annotation it concerns (when known)."""

    severity: Severity
    message: str
    image_id: int | None = None
    annotation_id: int | None = None

    def __str__(self) -> str:
        where = []
        if self.annotation_id is not None:
            where.append(f"annotation {self.annotation_id}")
        if self.image_id is not None:
            where.append(f"image {self.image_id}")
        prefix = f"{self.severity}: " + (f"{', '.join(where)}: " if where else "")
        return prefix + self.message


@dataclass
class ValidationReport:
    """Everything :func:`load_coco` found wrong with one file, and how much it loaded."""

    source: str
    issues: list[ValidationIssue] = field(default_factory=list)
    num_images: int = 0
    num_annotations: int = 0

    @property
    def fatal(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "fatal"]

    @property
    def skipped(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "skipped"]

    @property
    def warnings(self) -> list[ValidationIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing is fatal: the loaded part can be used (skips and warnings allowed)."""
        return not self.fatal

    def summary(self) -> str:
        """A text listing every issue (naming its image and annotation id) under a line of counts."""
        if self.fatal:
            head = f"{self.source}: cannot be loaded ({len(self.fatal)} fatal problems)"
        else:
            skipped_images = sum(
                1 for i in self.skipped if i.annotation_id is None and i.image_id is not None
            )
            skipped_annotations = len(self.skipped) - skipped_images
            head = (
                f"{self.source}: loaded {self.num_images} images and {self.num_annotations} annotations; "
                f"skipped {skipped_images} images and {skipped_annotations} annotations; "
                f"{len(self.warnings)} warnings"
            )
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])

    def _add(
        self, severity: Severity, message: str, image_id: int | None = None, annotation_id: int | None = None
    ) -> None:
        self.issues.append(ValidationIssue(severity, message, image_id, annotation_id))


class CocoValidationError(ValueError):
    """A COCO file with fatal problems; ``report`` lists them."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass(frozen=True, eq=False)
class CocoAnnotation:
    """One instance: ``rle`` is its mask as compressed COCO RLE (``{"size": [H, W], "counts": str}``).

    ``label`` is the contiguous model label ``1..K`` of ``category_id``. Crowd annotations
    (``iscrowd``) mark regions of many objects; training ignores them.
    """

    id: int
    category_id: int
    label: int
    rle: dict
    iscrowd: bool = False

    @classmethod
    def from_mask(
        cls, id: int, category_id: int, label: int, mask: CroppedMask, *, iscrowd: bool = False
    ) -> CocoAnnotation:
        return cls(id, category_id, label, mask_to_rle(mask), iscrowd)

    @property
    def mask(self) -> CroppedMask:
        """The decoded mask (decoded on every access: keep the result if you need it twice)."""
        return rle_to_mask(self.rle)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The mask's tight box, xyxy in image pixels (``x2``/``y2`` exclusive edges)."""
        x, y, w, h = (float(v) for v in mask_utils.toBbox(self.rle))
        return x, y, x + w, y + h

    @property
    def area(self) -> int:
        """The number of mask pixels."""
        return int(mask_utils.area(self.rle))


@dataclass(frozen=True)
class CocoImage:
    """One image: ``file_name`` as written in the JSON (relative to the images folder), ``path`` on disk."""

    id: int
    file_name: str
    path: Path
    height: int
    width: int
    annotations: tuple[CocoAnnotation, ...] = ()


@dataclass(frozen=True)
class CocoData:
    """A validated COCO dataset: categories sorted by id and images.

    ``class_map`` gives the model label of each category: label ``i + 1`` is ``categories[i]``.
    """

    categories: tuple[Category, ...]
    images: list[CocoImage]
    class_map: ClassMap = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.categories]
        if not ids or ids != sorted(set(ids)):
            raise ValueError(f"categories must be non-empty, sorted by id and unique, got ids {ids}")
        object.__setattr__(self, "class_map", ClassMap(self.categories))

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.class_map.names

    @property
    def num_annotations(self) -> int:
        return sum(len(img.annotations) for img in self.images)

    def label_to_category_id(self, labels: np.ndarray) -> np.ndarray:
        """Map model labels ``(N,)`` in ``1..K`` to the dataset's category ids ``(N,)`` int64."""
        return self.class_map.labels_to_category_ids(labels)

    def category_id_to_label(self, category_ids: np.ndarray) -> np.ndarray:
        """Map the dataset's category ids ``(N,)`` to model labels ``(N,)`` int64 in ``1..K``."""
        return self.class_map.category_ids_to_labels(category_ids)


class _Invalid(Exception):
    """An entry that must be skipped; the message says why (internal to the validator)."""


def load_coco(json_path: str | Path, images_dir: str | Path | None) -> tuple[CocoData, ValidationReport]:
    """Read and validate a COCO instance-segmentation file whose images live under ``images_dir``.

    Returns the usable part and the report of what was skipped or clipped. Raises
    :class:`CocoValidationError` (a ``ValueError``) when the file has fatal problems. ``images_dir=None``
    validates the file alone (ground truth scored against a results file): each image's size is then
    the JSON's, which must give it, and no image file is read.
    """
    json_path = Path(json_path)
    try:
        dataset = read_json(json_path)
    except JsonFileError as err:
        report = ValidationReport(str(json_path))
        report._add("fatal", str(err))
        raise CocoValidationError(report) from None
    return validate_coco(dataset, images_dir, source=str(json_path))


def validate_coco(
    dataset: object, images_dir: str | Path | None, *, source: str
) -> tuple[CocoData, ValidationReport]:
    """:func:`load_coco` for a COCO dict already in memory (``source`` names it in the report)."""
    report = ValidationReport(source)
    if not _check_lists(dataset, report):
        raise CocoValidationError(report)
    assert isinstance(dataset, dict)
    categories = _check_categories(dataset["categories"], report)
    image_entries = _check_image_ids(dataset["images"], report)
    _check_unique_file_names(image_entries, report)
    images_root = Path(images_dir).resolve() if images_dir is not None else None
    if images_root is not None and not images_root.is_dir():
        report._add("fatal", f"the images folder {images_root} does not exist")
    if report.fatal:
        raise CocoValidationError(report)

    class_map = ClassMap(tuple(categories))
    anns_of = _group_annotations(dataset["annotations"], set(image_entries), class_map, report)
    images = []
    for image_id, entry in image_entries.items():
        try:
            if images_root is None:
                file_name, path, height, width = _check_image_entry(entry)
            else:
                file_name, path, height, width = _check_image(entry, images_root, report)
        except _Invalid as err:
            count = len(anns_of.get(image_id, ()))
            report._add("skipped", f"{err} ({count} annotations dropped with it)", image_id)
            continue
        annotations = []
        for ann in anns_of.get(image_id, ()):
            try:
                annotations.append(_check_annotation(ann, image_id, height, width, class_map, report))
            except _Invalid as err:
                report._add("skipped", str(err), image_id, ann["id"])
        images.append(CocoImage(image_id, file_name, path, height, width, tuple(annotations)))
    data = CocoData(tuple(categories), images)
    report.num_images, report.num_annotations = len(images), data.num_annotations
    return data, report


def _check_lists(dataset: object, report: ValidationReport) -> bool:
    """Whether ``dataset`` is an object holding the three lists (what is wrong goes to ``report``)."""
    if not isinstance(dataset, dict):
        report._add(
            "fatal",
            f"expected a JSON object with images, annotations, categories; got {type(dataset).__name__}",
        )
        return False
    for key in ("images", "annotations", "categories"):
        if key not in dataset:
            report._add("fatal", f'missing the "{key}" list')
        elif not isinstance(dataset[key], list):
            report._add("fatal", f'"{key}" must be a list, got {type(dataset[key]).__name__}')
    return not report.fatal


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is an integer number (``3`` or ``3.0``, not ``True`` or ``"3"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


#: Ids are stored as SQLite integers and trained as int64 labels: anything wider is refused.
_ID_MIN, _ID_MAX = -(2**63), 2**63 - 1


def _id_too_wide(value: int) -> bool:
    return not _ID_MIN <= value <= _ID_MAX


def _check_categories(entries: list, report: ValidationReport) -> list[Category]:
    categories: dict[int, Category] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):
        cat_id = _as_int(entry.get("id")) if isinstance(entry, dict) else None
        if cat_id is None:
            report._add("fatal", f"categories[{index}] has no integer id: {entry!r}")
        elif _id_too_wide(cat_id):
            report._add("fatal", f"category id {cat_id} does not fit in 64 bits")
        elif cat_id in categories:
            report._add("fatal", f"duplicate category id {cat_id}")
        else:
            name = entry.get("name")
            name = name if isinstance(name, str) and name else str(cat_id)
            if name in names:
                report._add("fatal", f"duplicate category name {name!r} (id {cat_id})")
            names.add(name)
            categories[cat_id] = Category(cat_id, name)
    if not entries:
        report._add("fatal", "no categories: the file must define at least one")
    return [categories[i] for i in sorted(categories)]


def _check_image_ids(entries: list, report: ValidationReport) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for index, entry in enumerate(entries):
        image_id = _as_int(entry.get("id")) if isinstance(entry, dict) else None
        if image_id is None:
            report._add("fatal", f"images[{index}] has no integer id: {entry!r}")
        elif _id_too_wide(image_id):
            report._add("fatal", f"image id {image_id} does not fit in 64 bits")
        elif image_id in images:
            report._add("fatal", f"duplicate image id {image_id}", image_id)
        else:
            images[image_id] = entry
    return images


def _group_annotations(
    entries: list, image_ids: set[int], class_map: ClassMap, report: ValidationReport
) -> dict[int, list[dict]]:
    """Annotations per image id, dropping those whose ids cannot be trusted."""
    seen: set[int] = set()
    grouped: dict[int, list[dict]] = {}
    for index, ann in enumerate(entries):
        ann_id = _as_int(ann.get("id")) if isinstance(ann, dict) else None
        if ann_id is None:
            report._add("skipped", f"annotations[{index}] has no integer id")
            continue
        if _id_too_wide(ann_id):
            report._add("skipped", f"annotations[{index}]: id {ann_id} does not fit in 64 bits")
            continue
        image_id = _as_int(ann.get("image_id"))
        if ann_id in seen:
            report._add("skipped", "duplicate annotation id (the first one is kept)", image_id, ann_id)
            continue
        seen.add(ann_id)
        if image_id not in image_ids:
            report._add("skipped", f"unknown image id {ann.get('image_id')!r}", None, ann_id)
            continue
        category_id = _as_int(ann.get("category_id"))
        if category_id is None or not class_map.has_category_id(category_id):
            report._add("skipped", f"unknown category id {ann.get('category_id')!r}", image_id, ann_id)
            continue
        grouped.setdefault(image_id, []).append({**ann, "id": ann_id})
    return grouped


def _check_unique_file_names(image_entries: dict[int, dict], report: ValidationReport) -> None:
    """An image listed twice (two ids, one file) would be trained on twice with different objects."""
    first_id: dict[str, int] = {}
    for image_id, entry in image_entries.items():
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            continue  # reported per image by the entry check
        key = name.replace("\\", "/")
        if key in first_id:
            report._add(
                "fatal",
                f"the file {name!r} is listed twice (image ids {first_id[key]} and {image_id})",
                image_id,
            )
        else:
            first_id[key] = image_id


def _check_image_entry(entry: dict) -> tuple[str, Path, int, int]:
    """``(file_name, path, height, width)`` of an image entry from the JSON alone (no file is read)."""
    file_name = entry.get("file_name")
    file_name = file_name if isinstance(file_name, str) else ""
    height, width = _as_int(entry.get("height")), _as_int(entry.get("width"))
    if height is None or width is None or height < 1 or width < 1:
        raise _Invalid(
            f"no positive integer height/width ({entry.get('height')!r} x {entry.get('width')!r}); "
            "the masks cannot be checked without them"
        )
    return file_name, Path(file_name), height, width


def _check_image(entry: dict, images_root: Path, report: ValidationReport) -> tuple[str, Path, int, int]:
    """Return ``(file_name, path, height, width)`` of a usable image entry or raise :class:`_Invalid`."""
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise _Invalid(f"no file_name: {file_name!r}")
    # Files written on Windows use backslashes; both separators mean a folder here.
    relative = file_name.replace("\\", "/")
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(file_name).drive:
        raise _Invalid(
            f"file_name {file_name!r} is an absolute path; it must be relative to the images folder"
        )
    try:
        path = (images_root / relative).resolve()
    except (OSError, ValueError) as err:  # a NUL byte, a symlink loop
        raise _Invalid(f"file_name {file_name!r} is not a usable path: {err}") from err
    if not path.is_relative_to(images_root):
        raise _Invalid(f"file_name {file_name!r} points outside the images folder {images_root}")
    reason = unreadable_reason(path)
    if reason == "no such file":
        raise _Invalid(f"image file missing: {path}")
    if reason is not None:  # a directory, a named pipe (which would block the read), an empty file
        raise _Invalid(f"image file unusable: {path}: {reason}")
    try:
        actual = image_size(path)
    except ImageReadError as err:
        raise _Invalid(f"image file unreadable: {err}") from err
    height, width = _as_int(entry.get("height")), _as_int(entry.get("width"))
    if height is None or width is None:
        report._add(
            "warning", f"no integer height/width; using the file's {actual[0]}x{actual[1]} (HxW)", entry["id"]
        )
        return file_name, path, *actual
    if (height, width) != actual:
        hint = " (EXIF orientation turns it)" if (width, height) == actual else ""
        raise _Invalid(
            f"the file is {actual[0]}x{actual[1]} (HxW) but the JSON says {height}x{width}{hint}: {path}"
        )
    return file_name, path, height, width


def _check_annotation(
    ann: dict, image_id: int, height: int, width: int, class_map: ClassMap, report: ValidationReport
) -> CocoAnnotation:
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1):  # also admits True/False: tools write either
        raise _Invalid(f"iscrowd must be 0, 1, true or false, got {iscrowd!r}")
    if "segmentation" not in ann:
        raise _Invalid("no segmentation (a mask is needed: polygons or RLE)")
    segmentation = ann["segmentation"]
    # Some tools write one polygon as a flat list of coordinates instead of a list of polygons.
    if isinstance(segmentation, list) and segmentation and isinstance(segmentation[0], int | float):
        segmentation = [segmentation]
    try:
        # Checked before pycocotools sees it: it decodes an RLE that covers too few pixels into
        # uninitialised memory, and takes a 4-number "polygon" for a box.
        mask = segmentation_to_mask(segmentation, (height, width))
    except InvalidSegmentationError as err:
        raise _Invalid(str(err)) from err
    if mask.area == 0:
        raise _Invalid("empty mask (no pixel inside the image)")
    category_id = _as_int(ann["category_id"])
    assert category_id is not None  # _group_annotations left out the annotations without a known one
    annotation = CocoAnnotation(
        ann["id"], category_id, class_map.category_id_to_label(category_id), mask_to_rle(mask), bool(iscrowd)
    )
    if "bbox" in ann:
        x, y, w, h = mask_bbox_xywh(mask)
        _check_bbox(ann["bbox"], (x, y, x + w, y + h), height, width, image_id, ann["id"], report)
    return annotation


def _check_bbox(
    bbox: Any,
    mask_box: tuple[float, float, float, float],
    height: int,
    width: int,
    image_id: int,
    ann_id: int,
    report: ValidationReport,
) -> None:
    """Warn about a JSON bbox (xywh) outside the image or far from the mask's box (the mask is used)."""
    if not (
        isinstance(bbox, list | tuple)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        and bbox[2] >= 0
        and bbox[3] >= 0
    ):
        report._add(
            "warning",
            f"malformed bbox {bbox!r} (expected [x, y, w, h]); using the mask's box",
            image_id,
            ann_id,
        )
        return
    x, y, w, h = (float(v) for v in bbox)
    box = (x, y, x + w, y + h)
    clipped = (
        min(max(box[0], 0.0), width),
        min(max(box[1], 0.0), height),
        min(box[2], width),
        min(box[3], height),
    )
    if clipped != box:
        report._add(
            "warning",
            f"bbox {list(bbox)} extends outside the {width}x{height} image; clipped",
            image_id,
            ann_id,
        )
    tolerance = BBOX_PIXEL_TOLERANCE + BBOX_RELATIVE_TOLERANCE * max(
        mask_box[2] - mask_box[0], mask_box[3] - mask_box[1]
    )
    if max(abs(a - b) for a, b in zip(clipped, mask_box, strict=True)) > tolerance:
        mask_xywh = [mask_box[0], mask_box[1], mask_box[2] - mask_box[0], mask_box[3] - mask_box[1]]
        report._add(
            "warning",
            f"bbox {list(bbox)} disagrees with the mask's box {mask_xywh}; using the mask's",
            image_id,
            ann_id,
        )


# --------------------------------------------------------------------------------------------------
# writing


def coco_dict(
    images: Sequence[CocoImage],
    categories: Sequence[Category],
    *,
    segmentation: Literal["rle", "polygon"] = "rle",
    info: dict | None = None,
) -> dict:
    """The COCO dataset dict of ``images`` (with their annotations) and ``categories``.

    ``bbox`` (xywh) and ``area`` come from each mask with pycocotools. ``segmentation="polygon"``
    writes polygons where they redraw the mask exactly and RLE elsewhere (masks with holes, which COCO
    polygons cannot express), so no pixel or hole is lost either way.
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f'segmentation must be "rle" or "polygon", got {segmentation!r}')
    annotations = []
    for image in images:
        for ann in image.annotations:
            annotations.append(
                {
                    "id": ann.id,
                    "image_id": image.id,
                    "category_id": ann.category_id,
                    "segmentation": (
                        _polygons_or_rle(ann) if segmentation == "polygon" and not ann.iscrowd else ann.rle
                    ),  # a crowd region is RLE, as COCO writes it
                    "area": ann.area,
                    "bbox": [float(v) for v in mask_utils.toBbox(ann.rle)],
                    "iscrowd": int(ann.iscrowd),
                }
            )
    return {
        "info": dict(info or {}),
        "images": [
            {"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width} for im in images
        ],
        "annotations": annotations,
        "categories": [{"id": c.id, "name": c.name} for c in categories],
    }


def _polygons_or_rle(annotation: CocoAnnotation) -> list[list[float]] | dict:
    """Polygons when they redraw the mask exactly, else the RLE (holes do not survive as polygons)."""
    mask = annotation.mask
    polygons = mask_to_polygons(mask)
    # mask_to_polygons follows pixel edges exactly and fills holes: an unchanged area means no hole
    if polygons_to_mask(polygons, mask.image_size).area == mask.area:
        return polygons
    return annotation.rle


def write_coco(
    path: str | Path,
    images: Sequence[CocoImage],
    categories: Sequence[Category],
    *,
    segmentation: Literal["rle", "polygon"] = "rle",
    info: dict | None = None,
) -> None:
    """Write :func:`coco_dict` to ``path`` atomically: a crash leaves the old file or the new, never half."""
    write_json_atomic(path, coco_dict(images, categories, segmentation=segmentation, info=info))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as compact JSON atomically (see :func:`maskrcnn_core.atomic.atomic_write`)."""
    # dumps: the C encoder; json.dump streams through Python
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def predictions_to_coco_results(predictions: Sequence[Prediction], image_ids: Sequence[int]) -> list[dict]:
    """COCO results (one dict per detection) for ``predictions[i]`` made on image ``image_ids[i]``.

    Each result has ``image_id``, ``category_id`` (the prediction's dataset category id), ``bbox``
    xywh in original pixels, ``score`` and ``segmentation`` compressed RLE with ``counts`` as str.
    Failed predictions contribute nothing.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"got {len(predictions)} predictions for {len(image_ids)} image ids")
    results = []
    for prediction, image_id in zip(predictions, image_ids, strict=True):
        for box, score, category_id, mask in zip(
            prediction.boxes.tolist(),
            prediction.scores.tolist(),
            prediction.category_ids.tolist(),
            prediction.masks,
            strict=True,
        ):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_id),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(score),
                    "segmentation": mask_to_rle(mask),
                }
            )
    return results
