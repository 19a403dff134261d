"""COCO import into the project store and export out of it (Qt-free: the command line uses it).

Validation and the file format itself are ``maskrcnn_core.data.coco``'s (``load_coco`` / ``write_coco``);
this module maps between COCO and the store: categories by name (a new category keeps the file's id when
it is free, so ids are stable from import to export), images by file name, masks as RLE. labelme files
(:mod:`app.project.labelme_io`) are imported the same way. An import is one transaction: all of it or nothing.

What an import does to an image the file annotates is the store's rule (``ProjectStore.import_instances``):
the file's annotations replace the image's untouched predictions, a person's instances are kept, and an
annotation the image already holds is counted as a duplicate instead of being added twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.project.labelme_io import LabelmeReport, is_labelme, labelme_files, read_labelme
from app.project.mask_ops import instance_box
from app.project.records import ImageStatus, ImportCounts, NewInstance, Provenance
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from app.project.truth import annotations_of
from maskrcnn_core.data.coco import CocoAnnotation, CocoImage, load_coco, write_coco
from maskrcnn_core.image_io import ImageReadError, image_size
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.types import Category, ClassMap


@dataclass(frozen=True)
class ImportSummary:
    images: int  # images of the file found in the folder
    added: int  # annotations added
    duplicates: int  # annotations identical to one already there (or earlier in the file): not added again
    replaced: int  # untouched predictions the file's annotations replaced
    report: str  # the validator's summary: what was skipped or clipped, and why

    def headline(self) -> str:
        """One line saying what the import did, for the command line and the window alike."""
        return (
            f"imported {self.added} annotations on {self.images} images; replaced {self.replaced} "
            f"predictions; {self.duplicates} duplicates of annotations already there were not added again"
        )

    @classmethod
    def of(cls, images: int, counts: ImportCounts, report: str) -> ImportSummary:
        return cls(images, counts.added, counts.duplicates, counts.replaced, report)


@dataclass(frozen=True)
class ExportSummary:
    images: int
    annotations: int
    skipped_images: list[str]  # unusable files left out, with the reason


def import_coco(store: ProjectStore, json_path: Path) -> ImportSummary:
    """Import the annotations of a COCO file whose images are in the project's folder.

    In each image the file annotates they replace the untouched predictions; re-importing the same file
    changes nothing (every annotation is a duplicate). Imported instances have provenance ``imported``
    and are never replaced by a model run. Raises ``CocoValidationError`` (a ``ValueError``) for an
    unusable file.
    """
    data, report = load_coco(json_path, store.images_dir)
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
                    iscrowd=ann.iscrowd,
                )
                for ann in image.annotations
            ]
            counts += store.import_instances(record.id, instances)
    return ImportSummary.of(len(data.images), counts, report.summary())


def import_labelme(store: ProjectStore, path: Path) -> ImportSummary:
    """Import the instances of a labelme JSON file (or of every labelme file in a directory).

    Labels become categories by name; each instance is ``imported`` and replaces the image's untouched
    predictions as a COCO import does; re-importing changes nothing.
    """
    report = LabelmeReport(str(path))
    read = [read_labelme(f, store.images_dir, report) for f in labelme_files(Path(path))]
    images = [image for image in read if image is not None]
    counts = ImportCounts()
    with store.transaction():  # all of it or nothing
        labels = sorted({label for image in images for label, _ in image.instances})
        category_ids = store.ensure_categories(labels) if labels else {}
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
            ]
            counts += store.import_instances(record.id, instances)
    return ImportSummary.of(len(images), counts, report.summary())


def import_annotations(store: ProjectStore, path: Path) -> ImportSummary:
    """Import a COCO file, a labelme file, or a directory of labelme files (recognised by content)."""
    path = Path(path)
    if path.is_dir():
        return import_labelme(store, path)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        data = None  # load_coco reports it properly
    return import_labelme(store, path) if is_labelme(data) else import_coco(store, path)


#: Which images an export holds: every looked-at image (``None``), only those a person edited or
#: verified (``"annotated"``), or only verified ones (``"verified"``).
EXPORT_SELECTIONS = {
    None: (ImageStatus.PREDICTED, ImageStatus.CORRECTED, ImageStatus.VERIFIED),
    "annotated": (ImageStatus.CORRECTED, ImageStatus.VERIFIED),
    "verified": (ImageStatus.VERIFIED,),
}


def export_coco(
    store: ProjectStore,
    out: Path,
    *,
    segmentation: Literal["rle", "polygon"] = "rle",
    score_threshold: float | None = None,
    only: Literal["verified", "annotated"] | None = None,
) -> ExportSummary:
    """Write the project's annotations as a COCO file (atomic replace), loadable by pycocotools.

    Images nobody and no model has looked at yet (status ``new``) and unusable files are left out:
    an unlabelled image is not an image without objects; ``only`` narrows it further (see
    ``EXPORT_SELECTIONS``). Predictions scoring below ``score_threshold`` (default: the project's slider
    setting) are left out, as they are hidden in the app: each image holds what the truth rule
    (:mod:`app.project.truth`) counts. ``segmentation``: compressed RLE (pixel-exact, holes kept) or
    polygons (RLE for the masks that polygons cannot redraw exactly).
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f'the export format must be "rle" or "polygon", got {segmentation!r}')
    if only not in EXPORT_SELECTIONS:
        raise ValueError(f'--only must be "verified" or "annotated", got {only!r}')
    statuses = EXPORT_SELECTIONS[only]
    threshold = ProjectSettings(store).score_threshold if score_threshold is None else score_threshold
    categories = store.categories()
    coco_categories = [Category(c.id, c.name) for c in categories]
    if not coco_categories:
        raise ValueError("the project has no categories yet, so there is nothing to export")
    class_map = ClassMap(tuple(coco_categories))
    images, skipped = [], []
    for image in store.images():
        if image.status not in statuses:
            continue
        if image.error:
            skipped.append(f"{image.file_name}: {image.error}")
            continue
        path = store.images_dir / image.file_name
        height, width = image.height, image.width
        if height is None or width is None:
            try:
                height, width = image_size(path)
            except ImageReadError as exc:
                skipped.append(f"{image.file_name}: {exc}")
                continue
        coco_annotations = tuple(
            CocoAnnotation(
                r.id, r.category_id, class_map.category_id_to_label(r.category_id), r.rle, r.iscrowd
            )
            for r in annotations_of(store.instances(image.id), threshold)
        )
        images.append(CocoImage(image.id, image.file_name, path, height, width, coco_annotations))
    write_coco(
        out, images, coco_categories, segmentation=segmentation, info={"description": "Mask R-CNN Studio"}
    )
    return ExportSummary(
        images=len(images), annotations=sum(len(i.annotations) for i in images), skipped_images=skipped
    )
