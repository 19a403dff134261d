"""Instance label images out of the project and into it (no Qt, no torch).

A label image is a one-channel image of the same size as its photo: 0 is the background and each
instance's pixels hold its own number, 1..N, as microscopy tools (cellpose, napari, StarDist) and Pascal
VOC's ``SegmentationObject`` use them. The export writes one 16-bit PNG (or TIFF) per image, at the image's
path with the label suffix, and a class table ``instances.csv`` (``image,label,category``: the label
image's path, the instance's number in it, its category). The import reads such a folder back: each
label image belongs to the project image with the same path and name stem.

A label image holds one number per pixel, so where instances overlap the export keeps the smaller one on
top (the larger one loses the shared pixels: a note in the report); crowd regions are not written. In a
palette image (VOC), 255 is the "void" border, not an instance.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from app.project.export_images import ExportSelection
from app.project.export_options import ExportOnly
from app.project.import_summary import FormatReport, ImportSummary, MaskImage, import_masks
from app.project.store import ProjectStore
from maskrcnn_core.image_io import IMAGE_EXTENSIONS, ImageReadError, image_size
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.paths import check_output_dir
from maskrcnn_core.types import CroppedMask

CLASS_TABLE = "instances.csv"
CLASS_TABLE_COLUMNS = ("image", "label", "category")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
EVERY_IMAGE = "*"  # a class table row for this label number in every label image
MAX_LABEL = 65535  # 16-bit
VOC_VOID = 255  # the border around each object in Pascal VOC's palette label images


@dataclass(frozen=True)
class LabelExportSummary:
    """What a label-image export wrote, and what the format could not carry."""

    images: int
    instances: int
    skipped_images: list[str]
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        return f"wrote {self.instances} instances in {self.images} label images and {CLASS_TABLE}"


# ------------------------------------------------------------------------------------------------ export
def export_label_images(
    store: ProjectStore,
    out: Path,
    *,
    suffix: str = ".png",
    only: ExportOnly | None = None,
    score_threshold: float | None = None,
) -> LabelExportSummary:
    """Write one 16-bit label image per exported image (the COCO export's selection and truth rule) and
    the class table, into the folder ``out`` (new or empty)."""
    if suffix not in (".png", ".tif"):
        raise ValueError(f'the label image format must be ".png" or ".tif", got {suffix!r}')
    out = check_output_dir(out, project_dir=store.db_path.parent)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"the export folder {out} is not empty: choose a new or empty folder")
    names = {c.id: c.name for c in store.categories()}
    selection = ExportSelection(store, only, score_threshold)
    rows: list[tuple[str, int, str]] = []
    images = instances = covered = crowd = 0
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for exported in selection:
        name = Path(exported.image.file_name).with_suffix(suffix).as_posix()
        if name in written:
            selection.skipped.append(
                f"{exported.image.file_name}: its label image would be {name}, which {written[name]} has"
            )
            continue
        written[name] = exported.image.file_name
        if len(exported.annotations) > MAX_LABEL:
            selection.skipped.append(f"{exported.image.file_name}: more than {MAX_LABEL} instances")
            continue
        labels = np.zeros(exported.size, dtype=np.uint16)
        masks = [(index, rle_to_mask(r.rle)) for index, r in enumerate(exported.annotations, start=1)]
        for number, mask in sorted(masks, key=lambda m: -m[1].area):  # the smaller on top
            x0, y0, x1, y1 = mask.crop_box
            region = labels[y0:y1, x0:x1]
            covered += int(np.count_nonzero(region[mask.mask]))
            region[mask.mask] = number
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels).save(target)
        rows += [(name, n, names[r.category_id]) for n, r in enumerate(exported.annotations, start=1)]
        images += 1
        instances += len(exported.annotations)
        crowd += len(exported.crowd_regions)
    with open(out / CLASS_TABLE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CLASS_TABLE_COLUMNS)
        writer.writerows(rows)
    notes = []
    if covered:
        notes.append(f"{covered} pixels where instances overlap went to the smaller instance")
    if crowd:
        notes.append(f"{crowd} crowd regions are left out: a label image has no crowd regions")
    return LabelExportSummary(images, instances, selection.skipped, notes)


# ------------------------------------------------------------------------------------------------ import
def is_label_image_folder(path: Path) -> bool:
    """A folder holding a class table, or label images and no JSON files."""
    if not path.is_dir():
        return False
    if (path / CLASS_TABLE).is_file():
        return True
    files = [p for p in path.iterdir() if p.is_file()]
    return any(p.suffix.lower() in LABEL_SUFFIXES for p in files) and not any(
        p.suffix.lower() == ".json" for p in files
    )


def needs_a_category(folder: Path) -> bool:
    """A folder of label images with no class table: each instance's category has to be given."""
    return is_label_image_folder(folder) and not (folder / CLASS_TABLE).is_file()


def import_label_images(
    store: ProjectStore,
    folder: Path,
    *,
    class_table: Path | None = None,
    category: str | None = None,
) -> ImportSummary:
    """Import a folder of label images: each ``NAME.png`` / ``.tif`` (in subfolders too) belongs to the
    project image at the same path with the same stem. Each label number is one imported instance (its
    pixels, in one part or several), of the category the class table gives it (``class_table``, else the
    folder's own ``instances.csv``) or of ``category`` for all. A label image of another size than its
    image, a colour image, or a number with no class is skipped with a line in the report; nothing already
    in the project is lost. An all-zero label image is an image with no objects.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of label images")
    if category is not None and not category.strip():
        raise ValueError("the category for every instance must be a non-empty name")
    table = None
    if category is None:
        path = class_table if class_table is not None else folder / CLASS_TABLE
        if not Path(path).is_file():
            raise ValueError(
                f"{folder}: no class table ({CLASS_TABLE}): give one (--class-table CSV) or one category "
                "for every instance (--category NAME)"
            )
        table = read_class_table(Path(path))
    root = store.images_dir.resolve()
    report = FormatReport(str(folder))
    images = []
    for label_file in sorted(p for p in folder.rglob("*") if p.suffix.lower() in LABEL_SUFFIXES):
        name = label_file.relative_to(folder).as_posix()
        image_name = _project_image(root, label_file, Path(name))
        if image_name is None:
            report.skipped.append(f"{name}: no single image named {Path(name).stem!r} beside it in {root}")
            continue
        try:
            labels = _read_labels(label_file)
            size = image_size(root / image_name)
        except (ValueError, ImageReadError) as exc:
            report.skipped.append(f"{name}: {exc}")
            continue
        if labels.shape != size:
            report.skipped.append(
                f"{name}: {labels.shape[0]}x{labels.shape[1]} (HxW), but its image {image_name} is "
                f"{size[0]}x{size[1]}"
            )
            continue
        instances = []
        found = _instances(labels)
        for number, mask in found:
            category_name = (
                category if table is None else table.get((name, number), table.get((EVERY_IMAGE, number)))
            )
            if category_name is None:
                report.skipped.append(f"{name}: label {number} has no class in the class table")
                continue
            instances.append((category_name, mask))
        if found and not instances:
            continue  # labels with no class are not a statement that the image holds nothing
        images.append(MaskImage(image_name, tuple(instances)))
        report.images += 1
        report.instances += len(instances)
    return import_masks(store, images, report)


def read_class_table(path: Path) -> dict[tuple[str, int], str]:
    """``(label image, label number) -> category`` from a CSV with the columns ``image,label,category``
    (``*`` as the image: that number in every label image). Raises ``ValueError`` naming the bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not set(CLASS_TABLE_COLUMNS) <= set(reader.fieldnames):
        raise ValueError(f"{path}: a class table needs the columns {','.join(CLASS_TABLE_COLUMNS)}")
    table = {}
    for row_number, row in enumerate(reader, start=2):
        try:
            number = int(row["label"])
        except (TypeError, ValueError):
            raise ValueError(f"{path} line {row_number}: label {row['label']!r} is not a number") from None
        image, name = (row["image"] or EVERY_IMAGE).strip(), (row["category"] or "").strip()
        if not 1 <= number <= MAX_LABEL or not name:
            raise ValueError(f"{path} line {row_number}: needs a label 1..{MAX_LABEL} and a category")
        table[(image, number)] = name
    return table


def _read_labels(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mode = im.mode
            labels = np.asarray(im)
    except OSError as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise ValueError(f"a {mode} image, not a one-channel label image")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError("negative labels")
    labels = labels.astype(np.int64)
    if mode == "P":
        labels[labels == VOC_VOID] = 0
    return labels


def _instances(labels: np.ndarray) -> list[tuple[int, CroppedMask]]:
    """Each nonzero number's pixels as a mask, found in one sort (no pass over the image per number)."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    values = flat[order]
    starts = np.flatnonzero(np.diff(values, prepend=-1))
    ends = np.append(starts[1:], len(values))
    width = labels.shape[1]
    found = []
    for start, end in zip(starts, ends, strict=True):
        number = int(values[start])
        if number == 0:
            continue
        rows, cols = np.divmod(order[start:end], width)
        y0, x0 = int(rows.min()), int(cols.min())
        crop = np.zeros((int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1), dtype=bool)
        crop[rows - y0, cols - x0] = True
        found.append((number, CroppedMask(x0, y0, crop, labels.shape)))
    return found


def _project_image(root: Path, label_file: Path, name: Path) -> str | None:
    """The project image (relative to ``root``) at the label image's relative path, any image suffix;
    ``None`` when there is none or several (which one would be a guess)."""
    base = root / name.parent
    if not base.is_dir():
        return None
    own = label_file.resolve()
    matches = [
        p
        for p in base.iterdir()
        if p.stem == name.stem and p.suffix.lower() in IMAGE_EXTENSIONS and p.resolve() != own and p.is_file()
    ]
    return matches[0].resolve().relative_to(root).as_posix() if len(matches) == 1 else None
