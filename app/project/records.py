"""Plain records of the open project, as the store returns them and the views show them.

No Qt, no torch. Boxes are float32-valued ``xyxy`` in original-image pixels (see ``maskrcnn_core.types``);
masks are stored as compressed COCO RLE dicts ``{"size": [H, W], "counts": str}`` of the full image.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from enum import StrEnum

import numpy as np

from maskrcnn_core.protocol import RunStatus


class Provenance(StrEnum):
    """Where an instance came from. Only ``PREDICTED`` instances are ever replaced by a model run."""

    PREDICTED = "predicted"  # made by a model and not touched since
    EDITED = "edited"  # changed (or drawn) by a person
    VERIFIED = "verified"  # checked by a person (Accept instance)
    IMPORTED = "imported"  # read from a COCO file; a person's work as far as we know, so never replaced


class ImageStatus(StrEnum):
    """How far an image is: shown as a badge in the image browser."""

    NEW = "new"  # no model has looked at it and nobody has edited it
    PREDICTED = "predicted"  # holds only model output
    CORRECTED = "corrected"  # a person edited it (or its annotations were imported)
    VERIFIED = "verified"  # a person checked the whole image (Accept image)


@dataclass(frozen=True)
class ImageRecord:
    """One image file of the project folder.

    ``file_name`` is the path relative to the images folder, with ``/`` separators. ``width``/``height``
    are ``None`` until the file has been read once. ``error`` says why the file cannot be used (unreadable,
    corrupt, too large); such an image is marked in the browser and skipped by the model. ``revision``
    counts a person's edits: a model result computed before the latest edit is never applied.
    """

    id: int
    file_name: str
    width: int | None
    height: int | None
    status: ImageStatus
    error: str | None
    revision: int


@dataclass(frozen=True)
class CategoryRecord:
    """A category of the project; ``color`` is ``#rrggbb``."""

    id: int
    name: str
    color: str
    supercategory: str = ""


@dataclass(frozen=True)
class InstanceRecord:
    """One annotated object of an image.

    ``rle`` is the compressed COCO RLE of the full image (``maskrcnn_core.masks.rle_to_mask`` turns it into
    a ``CroppedMask``); ``box`` is ``(x1, y1, x2, y2)`` in original pixels; ``score`` is the model's score
    for predicted instances (``None`` for a person's); ``model_version_id`` names the model that made it.
    """

    id: int
    image_id: int
    category_id: int
    rle: dict
    box: tuple[float, float, float, float]
    area: int
    provenance: Provenance
    score: float | None
    model_version_id: int | None
    iscrowd: bool
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class NewInstance:
    """An instance to be written; the store assigns its id and timestamps."""

    category_id: int
    rle: dict
    box: tuple[float, float, float, float]
    area: int
    provenance: Provenance
    score: float | None = None
    model_version_id: int | None = None
    iscrowd: bool = False
    uncertainty: float | None = None  # a model's own uncertainty about it (predicted instances only)


@dataclass(frozen=True)
class ImportCounts:
    """What importing annotations did to one image (or, summed, to a whole file).

    ``added``: imported instances written (crowd regions included); ``duplicates``: imported instances
    identical (same category, same mask) to one the image already held, or to an earlier one of the same
    file, so not written again; ``replaced``: untouched predictions removed because the imported
    annotations replace them; ``crowd``: crowd regions among ``added``; ``negatives``: images the file
    lists with no object instance, now verified as holding none; ``conflicts``: images the file calls
    negative that hold a person's instances, which were kept (so the image was not verified).
    """

    added: int = 0
    duplicates: int = 0
    replaced: int = 0
    crowd: int = 0
    negatives: int = 0
    conflicts: int = 0

    def __add__(self, other: ImportCounts) -> ImportCounts:
        return ImportCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class ModelVersionRecord:
    """A checkpoint the project has used; ``path`` is where it was loaded from."""

    id: int
    name: str
    arch: str
    path: str | None
    sha256: str | None
    categories: tuple[tuple[int, str], ...]
    created_at: str
    training_run_id: int | None


@dataclass(frozen=True)
class TrainingRunRecord:
    """A fine-tuning run started from the project: its settings (``config``), how it stands and its
    figures (``metrics``: validation, final losses, the base model's score on the same images)."""

    id: int
    status: RunStatus
    base_model_version_id: int | None
    output_model_version_id: int | None
    config: dict
    metrics: dict
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class Detection:
    """One detection of a model run, already encoded off the GUI thread.

    ``category_name`` is the model's class name (mapped to a project category by name), ``rle`` the
    compressed COCO RLE of the full image, ``box`` xyxy in original pixels, ``area`` in pixels.
    """

    category_name: str
    rle: dict
    box: tuple[float, float, float, float]
    area: int
    score: float
    uncertainty: float | None = None  # 0 (sure) .. 1, from the same pass


@dataclass(frozen=True, eq=False)
class ImageUncertainty:
    """How unsure the model that segmented an image was (``maskrcnn_core.engine.uncertainty``): ``score``
    ranks the review queue, ``reason`` says why in a few words, ``features`` (``(C,)`` float32, or ``None``)
    are the pooled image features that tell near-duplicates apart."""

    score: float
    reason: str
    features: np.ndarray | None = None


@dataclass(frozen=True)
class ImageResult:
    """What a model run produced for one image: its ``(H, W)`` size and detections, or why it failed;
    ``uncertainty`` where the model scored it."""

    image_id: int
    image_size: tuple[int, int]
    detections: tuple[Detection, ...]
    error: str | None = None
    uncertainty: ImageUncertainty | None = None
