"""Which images an export writes, and what each holds (no Qt, no torch).

One rule for every export format (COCO, YOLO, label images): images nobody and no model has looked at yet
(status ``new``) are left out, since an unlabelled image is not an image without objects; unusable files
are left out with the reason; ``only`` narrows the selection further; each image holds what the truth rule
(:mod:`app.project.truth`) counts at the score threshold, and its crowd regions apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.project.export_options import ExportOnly
from app.project.records import ImageRecord, ImageStatus, InstanceRecord
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from app.project.truth import annotations_of, crowd_regions_of
from maskrcnn_core.image_io import ImageReadError, image_size

#: Which images an export holds: every looked-at image (``None``), only those a person edited or
#: verified (``"annotated"``), or only verified ones (``"verified"``).
EXPORT_SELECTIONS = {
    None: (ImageStatus.PREDICTED, ImageStatus.CORRECTED, ImageStatus.VERIFIED),
    "annotated": (ImageStatus.CORRECTED, ImageStatus.VERIFIED),
    "verified": (ImageStatus.VERIFIED,),
}


@dataclass(frozen=True)
class ExportedImage:
    """One image an export writes: its record, file, ``(H, W)`` size, annotations and crowd regions."""

    image: ImageRecord
    path: Path
    size: tuple[int, int]
    annotations: list[InstanceRecord]
    crowd_regions: list[InstanceRecord]


@dataclass
class ExportSelection:
    """The images to export (read lazily, one at a time) and the files left out, with the reason."""

    store: ProjectStore
    only: ExportOnly | None = None
    score_threshold: float | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.only not in EXPORT_SELECTIONS:
            raise ValueError(f'--only must be "verified" or "annotated", got {self.only!r}')
        if self.score_threshold is None:
            self.score_threshold = ProjectSettings(self.store).score_threshold

    def __iter__(self) -> Iterator[ExportedImage]:
        statuses = EXPORT_SELECTIONS[self.only]
        threshold = self.score_threshold
        assert threshold is not None, "set in __post_init__"
        for image in self.store.images():
            if image.status not in statuses:
                continue
            if image.error:
                self.skipped.append(f"{image.file_name}: {image.error}")
                continue
            path = self.store.images_dir / image.file_name
            height, width = image.height, image.width
            if height is None or width is None:
                try:
                    height, width = image_size(path)
                except ImageReadError as exc:
                    self.skipped.append(f"{image.file_name}: {exc}")
                    continue
            instances = self.store.instances(image.id)
            yield ExportedImage(
                image,
                path,
                (height, width),
                annotations_of(instances, threshold),
                crowd_regions_of(instances),
            )
