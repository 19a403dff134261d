"""YOLO segmentation datasets in Ultralytics' layout, out of the project and into it (no Qt, no torch).

The layout: ``images/<split>/<file>`` and ``labels/<split>/<file stem>.txt`` side by side (Ultralytics
finds a label file by putting ``labels`` for ``images`` in the image's path), and ``data.yaml`` with the
dataset ``path``, the ``train`` / ``val`` image folders and the class ``names``. A label file has one
line per instance, ``class x1 y1 x2 y2 ...``: the class index and one polygon, normalised to ``[0, 1]``
by the image's width and height. An empty label file is an image with no objects.

Ultralytics reads a polygon as one ``cv2.fillPoly`` outline of its vertices scaled to pixels and cut to
whole pixels (``ultralytics/data/utils.py``, ``polygon2mask``). So, as its own converters do:

- an instance's outline goes through the centres of its boundary pixels (``cv2.findContours``), written
  as pixel centres (``x + 0.5``), so that scaling back and cutting to whole pixels gives those pixels;
- an instance in several parts is one polygon whose parts are joined at their closest vertices by a seam
  walked there and back (``converter.py``, ``merge_multi_segment``): the seam's pixels are added to the
  instance when the polygon is read back;
- a hole cannot be written: the outer outline is filled. This is what YOLO loses (see the README).

Crowd regions are not written (the format has none). The import reads these files back the same way:
each line is rasterised with ``cv2.fillPoly`` as Ultralytics does.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.project.export_images import ExportSelection
from app.project.export_options import ExportOnly
from app.project.import_summary import FormatReport, ImportSummary, MaskImage, import_masks
from app.project.store import ProjectStore
from app.project.training_set import split_images
from maskrcnn_core.image_io import IMAGE_EXTENSIONS, ImageReadError, image_size
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.paths import check_output_dir
from maskrcnn_core.types import CroppedMask

DATA_YAML = "data.yaml"
TRAIN, VAL = "train", "val"  # the split folders under images/ and labels/
COORDINATE_DECIMALS = 6  # as Ultralytics' converters write them


@dataclass(frozen=True)
class YoloExportSummary:
    """What a YOLO export wrote, and what it could not carry."""

    train_images: int
    val_images: int
    instances: int
    skipped_images: list[str]  # unusable files left out, with the reason
    notes: list[str] = field(default_factory=list)  # what the format lost (holes, crowd regions, seams)

    def headline(self) -> str:
        return (
            f"wrote {self.instances} instances on {self.train_images} training and {self.val_images} "
            f"validation images"
        )


# ------------------------------------------------------------------------------------------------ export
def export_yolo(
    store: ProjectStore,
    out: Path,
    *,
    val_fraction: float = 0.0,
    only: ExportOnly | None = None,
    score_threshold: float | None = None,
) -> YoloExportSummary:
    """Write the project's annotations (the truth rule's, as the COCO export does) as a YOLO segmentation
    dataset in the folder ``out`` (new or empty): the images are copied in, one label file each.

    ``val_fraction`` of the images go to ``val`` by the training set's split rule
    (:func:`app.project.training_set.split_images`); with 0 every image is a training image and
    ``data.yaml`` names the training images as the validation set too (Ultralytics needs one).
    """
    out = check_output_dir(out, project_dir=store.db_path.parent)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"the export folder {out} is not empty: choose a new or empty folder")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"the validation share must be at least 0 and below 1, got {val_fraction}")
    categories = store.categories()
    if not categories:
        raise ValueError("the project has no categories yet, so there is nothing to export")
    class_index = {c.id: index for index, c in enumerate(categories)}
    selection = ExportSelection(store, only, score_threshold)
    exported = []
    label_of: dict[str, str] = {}  # Ultralytics finds a label by the image's path without its suffix
    for image in selection:
        stem = Path(image.image.file_name).with_suffix("").as_posix()
        if stem in label_of:
            selection.skipped.append(
                f"{image.image.file_name}: its label file would be {stem}.txt, which {label_of[stem]} has"
            )
            continue
        label_of[stem] = image.image.file_name
        exported.append(image)
    names = [e.image.file_name for e in exported]
    val = set(split_images(names, val_fraction)[1]) if val_fraction > 0 and len(names) >= 2 else set()
    holes = parts = crowd = instances = 0
    for image in exported:
        split = VAL if image.image.file_name in val else TRAIN
        lines = []
        for record in image.annotations:
            mask = rle_to_mask(record.rle)
            outlines, has_hole = _outlines(mask)
            if not outlines:
                continue
            holes += has_hole
            parts += len(outlines) > 1
            polygon = _join_parts(outlines)
            lines.append(_label_line(class_index[record.category_id], polygon, image.size))
        crowd += len(image.crowd_regions)
        instances += len(lines)
        target = out / "images" / split / image.image.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image.path, target)
        label = (out / "labels" / split / image.image.file_name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    _write_data_yaml(out, [c.name for c in categories], has_val=bool(val))
    notes = []
    if holes:
        notes.append(f"{holes} instances have holes, which YOLO polygons cannot hold: they are filled")
    if parts:
        notes.append(
            f"{parts} instances in several parts are written as one polygon whose parts are joined by a "
            "one-pixel seam (as Ultralytics' converter does)"
        )
    if crowd:
        notes.append(f"{crowd} crowd regions are left out: YOLO has no crowd regions")
    return YoloExportSummary(len(exported) - len(val), len(val), instances, selection.skipped, notes)


def _outlines(mask: CroppedMask) -> tuple[list[np.ndarray], bool]:
    """The outer outlines of the mask's parts as ``(N, 2)`` image pixel coordinates (boundary pixel
    centres, at least 3 vertices each), and whether the mask has a hole."""
    crop = np.pad(mask.mask.astype(np.uint8), 1)
    contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return [], False
    outer = [c for c, h in zip(contours, hierarchy[0], strict=True) if h[3] < 0]
    has_hole = len(outer) < len(contours)
    origin = np.array([mask.x0 - 1, mask.y0 - 1])
    outlines = []
    for contour in outer:
        points = contour.reshape(-1, 2) + origin
        while len(points) < 3:  # a one- or two-pixel part: walked there and back, still its pixels
            points = np.concatenate([points, points[::-1]])[:3]
        outlines.append(points)
    return outlines, has_hole


def _join_parts(outlines: list[np.ndarray]) -> np.ndarray:
    """One closed polygon through every part: each next part is entered from the previous one's vertex
    closest to it and left the same way back (a seam with no area), as Ultralytics joins segments."""
    if len(outlines) == 1:
        return outlines[0]

    def tour(index: int, entry: int) -> np.ndarray:
        ring = np.roll(outlines[index], -entry, axis=0)
        closed = np.concatenate([ring, ring[:1]])
        if index == len(outlines) - 1:
            return closed
        following = outlines[index + 1]
        distances = ((ring[:, None, :] - following[None, :, :]) ** 2).sum(-1)
        exit_at, next_entry = np.unravel_index(np.argmin(distances), distances.shape)
        return np.concatenate(
            [closed[: exit_at + 1], tour(index + 1, int(next_entry)), closed[exit_at:]], axis=0
        )

    return tour(0, 0)


def _label_line(class_index: int, polygon: np.ndarray, size: tuple[int, int]) -> str:
    height, width = size
    normalised = (polygon.astype(np.float64) + 0.5) / np.array([width, height])
    values = " ".join(f"{v:.{COORDINATE_DECIMALS}f}".rstrip("0").rstrip(".") for v in normalised.ravel())
    return f"{class_index} {values}"


def _write_data_yaml(out: Path, names: list[str], *, has_val: bool) -> None:
    """``data.yaml`` as Ultralytics reads it; strings are written as JSON strings (valid YAML)."""
    lines = [
        f"# YOLO segmentation dataset written by Mask R-CNN Studio ({len(names)} classes)",
        f"path: {json.dumps(str(out.resolve()))}",
        f"train: images/{TRAIN}",
        f"val: images/{VAL if has_val else TRAIN}",
        f"nc: {len(names)}",
        "names:",
        *(f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)),
    ]
    (out / DATA_YAML).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------ import
def is_yolo_folder(path: Path) -> bool:
    """A folder with a ``labels`` folder and a ``data.yaml`` (the dataset's class names)."""
    return path.is_dir() and (path / "labels").is_dir() and (path / DATA_YAML).is_file()


def import_yolo(store: ProjectStore, folder: Path) -> ImportSummary:
    """Import a YOLO segmentation dataset folder: every label file under ``labels/`` whose image is in
    the project's folder. The image is looked for at the label's path below the project's folder, with
    the dataset's split folder (``train/``) and without it, so a dataset exported from this project
    comes back onto its own images. Classes become categories by the names in ``data.yaml``.

    Each line is an imported instance; an empty label file is an image with no objects. A line that cannot
    be read (not numbers, fewer than 3 points, a class index the names do not have, coordinates outside
    ``[0, 1]``) is skipped with a line in the report; nothing already in the project is lost. Raises
    ``ValueError`` for a folder that is not a YOLO dataset.
    """
    folder = Path(folder)
    if not is_yolo_folder(folder):
        raise ValueError(f"{folder}: not a YOLO dataset folder (it needs {DATA_YAML} and a labels folder)")
    names = read_yolo_names(folder / DATA_YAML)
    report = FormatReport(str(folder))
    images = []
    root = store.images_dir.resolve()
    for label_file in sorted((folder / "labels").rglob("*.txt")):
        relative = label_file.relative_to(folder / "labels")
        image_name = _project_image(root, folder, relative)
        if image_name is None:
            report.skipped.append(f"labels/{relative.as_posix()}: no image of that name in {root}")
            continue
        try:
            size = image_size(root / image_name)
        except ImageReadError as exc:
            report.skipped.append(f"labels/{relative.as_posix()}: image unreadable: {exc}")
            continue
        instances = []
        try:
            text = label_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.skipped.append(f"labels/{relative.as_posix()}: unreadable ({exc})")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                instances.append(read_label_line(line, names, size))
            except ValueError as exc:
                report.skipped.append(f"labels/{relative.as_posix()} line {number}: {exc}")
        if not instances and text.strip():
            continue  # lines that could not be read are not a statement that the image holds nothing
        images.append(MaskImage(image_name, tuple(instances)))
        report.images += 1
        report.instances += len(instances)
    return import_masks(store, images, report)


def read_label_line(line: str, names: list[str], size: tuple[int, int]) -> tuple[str, CroppedMask]:
    """``(class name, mask)`` of one label line, rasterised as Ultralytics does; ``ValueError`` says why
    the line cannot be used."""
    fields = line.split()
    try:
        class_index = int(fields[0])
        coordinates = np.array([float(v) for v in fields[1:]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"not a class index and numbers: {line.strip()[:60]!r}") from None
    if not 0 <= class_index < len(names):
        raise ValueError(f"class {class_index} is not in data.yaml's {len(names)} names")
    if len(coordinates) == 4:
        raise ValueError("a box (class cx cy w h), not a polygon: a detection label has no mask")
    if len(coordinates) % 2:
        raise ValueError(f"an odd number of coordinates ({len(coordinates)})")
    if len(coordinates) < 6:
        raise ValueError(f"a polygon needs at least 3 points, got {len(coordinates) // 2}")
    if not np.isfinite(coordinates).all() or coordinates.min() < 0 or coordinates.max() > 1:
        raise ValueError("coordinates must be normalised to [0, 1]")
    height, width = size
    points = (coordinates.reshape(-1, 2) * np.array([width, height])).astype(np.int32)  # as Ultralytics
    points = np.minimum(points, np.array([width - 1, height - 1]))  # 1.0 is the far edge, not past it
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    crop = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(crop, [points - np.array([x0, y0])], color=1)
    return names[class_index], CroppedMask(int(x0), int(y0), crop.astype(bool), size)


def _project_image(root: Path, folder: Path, label: Path) -> str | None:
    """The project file name (relative to ``root``) of the image of ``labels/<label>``: the dataset's own
    image when it lies in the project's folder, else the same path below the project's folder with or
    without its leading split folders."""
    stem_path = label.with_suffix("")
    candidates = []
    dataset_images = folder / "images" / stem_path.parent
    if dataset_images.is_dir():
        candidates += [
            p for p in sorted(dataset_images.glob(f"{_glob_escape(stem_path.name)}.*")) if _is_image(p)
        ]
    for start in range(len(stem_path.parts)):
        tail = Path(*stem_path.parts[start:])
        base = root / tail.parent
        if base.is_dir():
            candidates += [p for p in sorted(base.glob(f"{_glob_escape(tail.name)}.*")) if _is_image(p)]
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved.is_relative_to(root) and resolved.is_file():
            return resolved.relative_to(root).as_posix()
    return None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def read_yolo_names(path: Path) -> list[str]:
    """The class names of a ``data.yaml``: ``names:`` as a list (``[a, b]`` or ``- a`` lines) or a map
    (``0: a`` lines). Only that key is read, so no YAML library is needed; another form is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^names\s*:\s*(.*?)\s*(#.*)?$", line)
        if not match:
            continue
        inline = match.group(1)
        if inline:
            if not (inline.startswith("[") and inline.endswith("]")):
                raise ValueError(f"{path}: names must be a list or a map of class names, got {inline[:60]!r}")
            items = [_yaml_scalar(v) for v in _split_inline(inline[1:-1])]
        else:
            items = _block_names(lines[index + 1 :], path)
        if not items or any(not name for name in items):
            raise ValueError(f"{path}: names holds an empty class name")
        return items
    raise ValueError(f"{path}: no names: the class names are needed to import the labels")


def _block_names(lines: list[str], path: Path) -> list[str]:
    listed: list[str] = []
    mapped: dict[int, str] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            break
        item = line.strip()
        if item.startswith("- "):
            listed.append(_yaml_scalar(item[2:]))
            continue
        match = re.match(r"^(\d+)\s*:\s*(.+)$", item)
        if not match:
            raise ValueError(f"{path}: cannot read the names entry {item[:60]!r}")
        mapped[int(match.group(1))] = _yaml_scalar(match.group(2))
    if mapped:
        if sorted(mapped) != list(range(len(mapped))):
            raise ValueError(f"{path}: the names' class indices must be 0, 1, 2, ... without gaps")
        return [mapped[i] for i in range(len(mapped))]
    return listed


def _split_inline(text: str) -> list[str]:
    items = re.finditer(r"""\s*('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^,]+)\s*,?""", text)
    return [m.group(1) for m in items if m.group(1).strip()]


def _yaml_scalar(text: str) -> str:
    text = text.strip()
    if text[:1] not in ("'", '"'):
        text = re.sub(r"\s+#.*$", "", text)  # a comment after an unquoted name
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return str(json.loads(text))
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    return text.strip()
