"""How auto-segmentation writes a model's result into the project (no Qt, no torch).

One rule for the app's "Auto-segment" and the headless ``maskrcnn-studio segment``: which images a run
over the folder segments (:func:`needs_segmentation`), and how one image's result is stored
(:func:`apply_model_result`): only untouched predictions are replaced, a person's instances are kept, and
a result computed before a person's latest edit of the image is dropped. The model's uncertainty about the
image (the review queue's order) is stored with its predictions and replaced with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.project.records import (
    Detection,
    ImageRecord,
    ImageResult,
    ImageStatus,
    InstanceRecord,
    NewInstance,
    Provenance,
)
from app.project.store import ProjectStore
from app.project.truth import is_untouched_prediction

# A new prediction overlapping a person's instance (edited, verified, imported) this much is the same object.
DUPLICATE_IOU = 0.5

EDITED_SINCE_THE_RUN = "edited since the run started; your edit is kept"


@dataclass(frozen=True)
class ApplyOutcome:
    """What happened to a model result: applied (with how many instances), or why not."""

    applied: bool
    added: int = 0
    reason: str = ""


def needs_segmentation(image: ImageRecord) -> bool:
    """Whether a run over the whole folder segments the image: new and predicted ones do.

    Corrected and verified images are a person's work and are skipped, so a run over the folder can
    never bring back a prediction that someone deleted. (Unusable files are the caller's to leave out.)
    """
    return image.status in (ImageStatus.NEW, ImageStatus.PREDICTED)


def apply_model_result(
    store: ProjectStore, result: ImageResult, *, expected_revision: int, model_version_id: int | None
) -> ApplyOutcome:
    """Store a model result for one image, unless a person edited the image since the run started.

    ``expected_revision`` is the image's revision when the run started. A failed image has its error
    stored. Only untouched predictions are replaced; a new detection that overlaps one of the person's
    instances (mask IoU >= ``DUPLICATE_IOU``) is dropped, so a re-run does not duplicate corrected
    objects. The model's class names become project categories (created when new). One transaction.
    """
    image_id = result.image_id
    if result.error is not None:
        if store.image(image_id).error != result.error:
            store.set_image_info(image_id, error=result.error)
        return ApplyOutcome(False, reason=result.error)
    with store.transaction():
        if store.image(image_id).revision != expected_revision:
            return ApplyOutcome(False, reason=EDITED_SINCE_THE_RUN)
        kept = [r for r in store.instances(image_id) if not is_untouched_prediction(r)]
        detections = _drop_duplicates(result.detections, kept)
        ids = store.ensure_categories(sorted({d.category_name for d in detections})) if detections else {}
        new = [
            NewInstance(
                category_id=ids[d.category_name],
                rle=d.rle,
                box=d.box,
                area=d.area,
                provenance=Provenance.PREDICTED,
                score=d.score,
                model_version_id=model_version_id,
                uncertainty=d.uncertainty,
            )
            for d in detections
        ]
        applied = store.apply_prediction(
            image_id,
            expected_revision=expected_revision,
            instances=new,
            model_version_id=model_version_id,
            image_size=result.image_size,
        )
        if applied:  # this model's view of the image replaces the last one's (or clears it when unscored)
            store.set_image_uncertainty(image_id, result.uncertainty, model_version_id=model_version_id)
    if applied:
        return ApplyOutcome(True, added=len(new))
    return ApplyOutcome(False, reason=EDITED_SINCE_THE_RUN)


def _drop_duplicates(detections: Sequence[Detection], kept: Sequence[InstanceRecord]) -> list[Detection]:
    if not kept or not detections:
        return list(detections)
    from pycocotools import mask as mask_utils

    ious = mask_utils.iou([d.rle for d in detections], [r.rle for r in kept], [0] * len(kept))
    return [d for d, row in zip(detections, ious, strict=True) if float(max(row)) < DUPLICATE_IOU]
