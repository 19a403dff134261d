"""What an import did, and the one way a format's masks go into the project (no Qt, no torch).

Every import (COCO, labelme, YOLO, label images) ends in :class:`ImportSummary`: one headline for the
command line and the window alike, and the reader's report of what was skipped and why. The readers of
formats that carry plain masks and class names (YOLO, label images) hand them to :func:`import_masks`,
which writes them by the store's import rule (``ProjectStore.import_instances``: a person's instances are
kept, untouched predictions replaced, duplicates not added twice) in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.project.mask_ops import instance_box
from app.project.records import ImportCounts, NewInstance, Provenance
from app.project.store import ProjectStore
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.types import CroppedMask


@dataclass(frozen=True)
class ImportSummary:
    images: int  # images of the file found in the folder
    added: int  # annotations added
    duplicates: int  # annotations identical to one already there (or earlier in the file): not added again
    replaced: int  # untouched predictions the file's annotations replaced
    report: str  # the validator's summary: what was skipped or clipped, and why
    crowd_regions: int = 0  # crowd regions among ``added``: kept and exported, never trained on
    negatives: int = 0  # images listed with no objects, now verified as holding none
    conflicts: int = 0  # images called negative that hold a person's instances (kept, not verified)

    def headline(self) -> str:
        """One line saying what the import did, for the command line and the window alike."""
        line = (
            f"imported {self.added - self.crowd_regions} annotations on {self.images} images; replaced "
            f"{self.replaced} predictions; {self.duplicates} duplicates of annotations already there were "
            f"not added again"
        )
        if self.crowd_regions:
            line += f"; {self.crowd_regions} crowd regions (kept, not trained on)"
        if self.negatives:
            line += f"; {self.negatives} images with no objects verified as negatives"
        if self.conflicts:
            line += (
                f"; {self.conflicts} images the file calls negative hold a person's instances, "
                f"which were kept (those images are not verified)"
            )
        return line

    @classmethod
    def of(cls, images: int, counts: ImportCounts, report: str) -> ImportSummary:
        return cls(
            images,
            counts.added,
            counts.duplicates,
            counts.replaced,
            report,
            crowd_regions=counts.crowd,
            negatives=counts.negatives,
            conflicts=counts.conflicts,
        )


@dataclass
class FormatReport:
    """What a format reader found and skipped, one line per skipped entry (file, line, instance)."""

    source: str
    images: int = 0
    instances: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was read differently from the file, and why

    def summary(self) -> str:
        head = (
            f"{self.source}: read {self.images} images and {self.instances} instances; "
            f"skipped {len(self.skipped)} entries"
        )
        return "\n".join(
            [
                head,
                *(f"  note: {line}" for line in self.notes),
                *(f"  skipped: {line}" for line in self.skipped),
            ]
        )


@dataclass(frozen=True)
class MaskImage:
    """One image a format reader read: its file name (relative to the images folder) and its instances
    as ``(category name, mask)``. No instance says the image holds none (a negative)."""

    file_name: str
    instances: tuple[tuple[str, CroppedMask], ...]


def import_masks(store: ProjectStore, images: Sequence[MaskImage], report: FormatReport) -> ImportSummary:
    """Write what a reader read as imported instances, categories by name, in one transaction."""
    counts = ImportCounts()
    with store.transaction():  # all of it or nothing
        names = sorted({name for image in images for name, _ in image.instances})
        category_ids = store.ensure_categories(names) if names else {}
        store.add_images(image.file_name for image in images)
        for image in images:
            record = store.image_by_name(image.file_name)
            assert record is not None, "added above, in this transaction"
            instances = [
                NewInstance(
                    category_id=category_ids[name],
                    rle=mask_to_rle(mask),
                    box=instance_box(mask),
                    area=mask.area,
                    provenance=Provenance.IMPORTED,
                )
                for name, mask in image.instances
            ]
            counts += store.import_instances(record.id, instances)
    return ImportSummary.of(len(images), counts, report.summary())
