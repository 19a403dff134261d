"""COCO import into the project store and export out of it (Qt-free: the command line uses it).

Validation and the file format itself are ``maskrcnn_core.data.coco``'s (``load_coco`` / ``write_coco``);
this module maps between COCO and the store: categories by name (a new category keeps the file's id when
it is free, so ids are stable from import to export), images by file name, masks as RLE. labelme files
(:mod:`app.project.labelme_io`) are imported the same way. An import is one transaction: all of it or nothing.

What an import does to an image the file annotates is the store's rule (``ProjectStore.import_instances``):
the file's annotations replace the image's untouched predictions, a person's instances are kept, and an
annotation the image already holds is counted as a duplicate instead of being added twice. An image the
file lists with no object annotation is a **negative**: it becomes verified with no objects (a person's
instances on it are kept and counted as a conflict), and the export writes it back as an image entry
with no annotations, so a round trip keeps it. Crowd regions (``iscrowd: 1``, labelme's ``__ignore__``)
are kept as instances flagged ``iscrowd`` and exported as ``iscrowd: 1`` RLE; they are never annotations
(:mod:`app.project.truth`), so training leaves them out and evaluation ignores detections inside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.project.export_images import ExportSelection
from app.project.export_options import ExportFormat, ExportOnly
from app.project.import_summary import ImportSummary
from app.project.label_image_io import import_label_images, is_label_image_folder
from app.project.labelme_io import LabelmeReport, is_labelme, labelme_files, read_labelme
from app.project.mask_ops import instance_box
from app.project.records import ImportCounts, NewInstance, Provenance
from app.project.store import ProjectStore
from app.project.yolo_io import DATA_YAML, import_yolo, is_yolo_folder
from maskrcnn_core.data.coco import CocoAnnotation, CocoImage, load_coco, write_coco
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.paths import read_json
from maskrcnn_core.types import Category, ClassMap


@dataclass(frozen=True)
class ExportSummary:
    images: int
    annotations: int
    skipped_images: list[str]  # unusable files left out, with the reason


#: The command-line flag that imports a CVAT-style file's crowd regions as instances (see
#: :func:`is_cvat_crowd_file`); named in the report line of such an import.
CROWD_AS_INSTANCES_FLAG = "--crowd-as-instances"


def is_cvat_crowd_file(data: object) -> bool:
    """A COCO file whose every annotation is an RLE with ``iscrowd: 1``: how CVAT writes brush masks
    unless an ``is_crowd`` attribute was set, so they are most likely objects, not crowd regions. Which
    they are is the person's call (the window asks; the command line takes ``--crowd-as-instances``)."""
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        return False
    annotations = data["annotations"]
    return bool(annotations) and all(
        isinstance(a, dict) and a.get("iscrowd") == 1 and isinstance(a.get("segmentation"), dict)
        for a in annotations
    )


def is_cvat_crowd_path(path: Path) -> bool:
    """Whether the file at ``path`` is a CVAT-style COCO file (:func:`is_cvat_crowd_file`), which the
    window asks about before importing; ``False`` for anything unreadable (the import says why)."""
    try:
        return Path(path).is_file() and is_cvat_crowd_file(read_json(path))
    except ValueError:
        return False


def import_coco(store: ProjectStore, json_path: Path, *, crowd_as_instances: bool = False) -> ImportSummary:
    """Import the annotations of a COCO file whose images are in the project's folder.

    In each image the file annotates they replace the untouched predictions; re-importing the same file
    changes nothing (every annotation is a duplicate). Imported instances have provenance ``imported``
    and are never replaced by a model run. An image listed with no annotations is a negative (see the
    module docstring); ``iscrowd: 1`` annotations become crowd regions, except in a CVAT-style file
    (:func:`is_cvat_crowd_file`) with ``crowd_as_instances``: there they are instances. Either way such a
    file gets a line in the report. Raises ``CocoValidationError`` (a ``ValueError``) for an unusable file.
    """
    data, report = load_coco(json_path, store.images_dir)
    try:
        cvat = is_cvat_crowd_file(read_json(json_path))
    except ValueError:
        cvat = False  # load_coco read it: a second read that fails changes nothing it found
    as_instances = cvat and crowd_as_instances
    counts = ImportCounts()
    with store.transaction():  # all of the file or nothing
        category_ids = store.ensure_categories(
            [c.name for c in data.categories], preferred_ids={c.name: c.id for c in data.categories}
        )
        store.add_images(image.file_name for image in data.images)
        for image in data.images:
            record = store.image_by_name(image.file_name)
            assert record is not None, "added above, in this transaction"
            instances = [
                NewInstance(
                    category_id=category_ids[data.class_map.category_id_to_name(ann.category_id)],
                    rle=ann.rle,
                    box=ann.bbox,
                    area=ann.area,
                    provenance=Provenance.IMPORTED,
                    iscrowd=ann.iscrowd and not as_instances,
                )
                for ann in image.annotations
            ]
            counts += store.import_instances(record.id, instances)
    summary = report.summary()
    if cvat:
        summary += "\n" + cvat_report_line(crowd_as_instances)
    return ImportSummary.of(len(data.images), counts, summary)


def cvat_report_line(as_instances: bool) -> str:
    """The report's line for a CVAT-style file: what its crowd regions were imported as, and the other way."""
    head = "every annotation is an RLE crowd region (iscrowd: 1), as CVAT writes brush masks:"
    if as_instances:
        return f"  note: {head} imported as instances ({CROWD_AS_INSTANCES_FLAG})"
    return (
        f"  note: {head} imported as crowd regions, kept but never trained on; if they are objects, import "
        f"the file with {CROWD_AS_INSTANCES_FLAG} into a project that does not hold them yet"
    )


def import_labelme(store: ProjectStore, path: Path) -> ImportSummary:
    """Import the instances of a labelme JSON file (or of every labelme file in a directory).

    Labels become categories by name; each instance is ``imported`` and replaces the image's untouched
    predictions as a COCO import does; re-importing changes nothing. A file with no object shapes is a
    negative. An ``__ignore__`` region has no category, but COCO's crowd annotations do (evaluation
    ignores detections of *that* category inside one), so it is kept as one crowd region per project
    category: nothing is judged there. ``_background_`` shapes are skipped (the background is not a class).
    """
    report = LabelmeReport(str(path))
    read = [read_labelme(f, store.images_dir, report) for f in labelme_files(Path(path))]
    images = [image for image in read if image is not None]
    counts = ImportCounts()
    with store.transaction():  # all of it or nothing
        labels = sorted({label for image in images for label, _ in image.instances})
        category_ids = store.ensure_categories(labels) if labels else {}
        every_category = [c.id for c in store.categories()]
        if not every_category and any(image.crowd_regions for image in images):
            report.skipped.append("crowd regions (__ignore__): the project has no category to ignore yet")
        store.add_images(image.file_name for image in images)
        for image in images:
            record = store.image_by_name(image.file_name)
            assert record is not None, "added above, in this transaction"
            instances = [
                NewInstance(
                    category_id=category_ids[label],
                    rle=mask_to_rle(mask),
                    box=instance_box(mask),
                    area=mask.area,
                    provenance=Provenance.IMPORTED,
                )
                for label, mask in image.instances
            ] + [
                NewInstance(
                    category_id=category_id,
                    rle=mask_to_rle(mask),
                    box=instance_box(mask),
                    area=mask.area,
                    provenance=Provenance.IMPORTED,
                    iscrowd=True,
                )
                for mask in image.crowd_regions
                for category_id in every_category
            ]
            counts += store.import_instances(record.id, instances)
    return ImportSummary.of(len(images), counts, report.summary())


def import_annotations(
    store: ProjectStore,
    path: Path,
    *,
    crowd_as_instances: bool = False,
    class_table: Path | None = None,
    category: str | None = None,
) -> ImportSummary:
    """Import a COCO file, a labelme file, a folder of labelme files, a YOLO segmentation dataset folder
    or a folder of label images (recognised by content). ``crowd_as_instances`` is for a CVAT-style COCO
    file (:func:`import_coco`); ``class_table`` and ``category`` for label images
    (:func:`app.project.label_image_io.import_label_images`)."""
    path = Path(path)
    if path.is_dir():
        if is_yolo_folder(path):
            return import_yolo(store, path)
        if class_table is not None or category is not None or is_label_image_folder(path):
            return import_label_images(store, path, class_table=class_table, category=category)
        if not labelme_files(path):
            raise ValueError(
                f"{path}: nothing to import here: no labelme JSON files, no YOLO dataset ({DATA_YAML} and "
                "labels/), no label images"
            )
        return import_labelme(store, path)
    try:
        data = read_json(path)
    except ValueError:
        data = None  # load_coco reports it properly
    if is_labelme(data):
        return import_labelme(store, path)
    return import_coco(store, path, crowd_as_instances=crowd_as_instances)


def export_coco(
    store: ProjectStore,
    out: Path,
    *,
    segmentation: ExportFormat = "rle",
    score_threshold: float | None = None,
    only: ExportOnly | None = None,
) -> ExportSummary:
    """Write the project's annotations as a COCO file (atomic replace), loadable by pycocotools.

    Images nobody and no model has looked at yet (status ``new``) and unusable files are left out:
    an unlabelled image is not an image without objects (a verified image with none is, and is written
    as an image entry with no annotations); crowd regions are written as ``iscrowd: 1``; ``only`` narrows
    it further (see :mod:`app.project.export_images`). Predictions scoring below ``score_threshold``
    (default: the project's slider setting) are left out, as they are hidden in the app: each image holds
    what the truth rule (:mod:`app.project.truth`) counts. ``segmentation``: compressed RLE (pixel-exact,
    holes kept) or polygons (RLE for crowd regions and for the masks that polygons cannot redraw exactly).
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f'the export format must be "rle" or "polygon", got {segmentation!r}')
    selection = ExportSelection(store, only, score_threshold)
    categories = store.categories()
    coco_categories = [Category(c.id, c.name) for c in categories]
    if not coco_categories:
        raise ValueError("the project has no categories yet, so there is nothing to export")
    class_map = ClassMap(tuple(coco_categories))
    images = []
    for exported in selection:
        coco_annotations = tuple(
            CocoAnnotation(
                r.id, r.category_id, class_map.category_id_to_label(r.category_id), r.rle, r.iscrowd
            )
            for r in exported.annotations + exported.crowd_regions
        )
        height, width = exported.size
        images.append(
            CocoImage(
                exported.image.id, exported.image.file_name, exported.path, height, width, coco_annotations
            )
        )
    write_coco(
        out, images, coco_categories, segmentation=segmentation, info={"description": "Mask R-CNN Studio"}
    )
    return ExportSummary(
        images=len(images),
        annotations=sum(len(i.annotations) for i in images),
        skipped_images=selection.skipped,
    )
