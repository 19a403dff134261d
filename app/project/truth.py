"""The truth rule: which instances of an image count as its annotations (no Qt, no torch).

An image's truth is what a person sees on it and stands behind: every instance a person made or touched
(edited, verified, imported) and the model's untouched predictions that score at least the score threshold
(those are shown, and leaving them in place accepts them). The canvas, the COCO export and the fine-tuning
set all ask this module, so what is shown is what is exported and what is trained on.

Untouched predictions are also the only instances a model run or an import may replace
(:func:`is_untouched_prediction`); a person's work is never removed by either.

A crowd region (COCO's ``iscrowd: 1``, labelme's ``__ignore__`` shape) is not an object instance: it marks
pixels where objects are not judged one by one. It is kept in the project and exported as ``iscrowd: 1``
(evaluation then ignores detections inside it), but it is never one of an image's annotations, so the
fine-tuning set does not train on it and an image holding only crowd regions holds no objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from app.project.records import InstanceRecord, Provenance


class _Instance(Protocol):
    """What the rule looks at: a stored ``InstanceRecord`` or a ``NewInstance`` about to be written."""

    @property
    def provenance(self) -> Provenance: ...

    @property
    def score(self) -> float | None: ...

    @property
    def iscrowd(self) -> bool: ...


InstanceT = TypeVar("InstanceT", bound=_Instance)


def is_untouched_prediction(instance: _Instance) -> bool:
    """A model's instance that nobody has edited or verified: the only kind a model run or an import
    replaces."""
    return Provenance(instance.provenance) is Provenance.PREDICTED


def is_accepted_prediction_of(instance: InstanceRecord, model_version_id: int | None) -> bool:
    """An instance model ``model_version_id`` made that counts as truth as the model made it: untouched, or
    accepted (verified) without an edit, as far as the store tells. The store does not keep whether a
    verified instance was edited before it was accepted, so such an instance counts here too."""
    return (
        model_version_id is not None
        and instance.model_version_id == model_version_id
        and Provenance(instance.provenance) in (Provenance.PREDICTED, Provenance.VERIFIED)
    )


def is_crowd_region(instance: _Instance) -> bool:
    """A region of many objects or of pixels not to judge: kept and exported, never an annotation."""
    return bool(instance.iscrowd)


def counts_as_annotation(instance: _Instance, score_threshold: float) -> bool:
    """Whether the instance is part of its image's truth: a person's instance always is, an untouched
    prediction when its score is at least ``score_threshold``, a crowd region never."""
    if is_crowd_region(instance):
        return False
    if not is_untouched_prediction(instance):
        return True
    return instance.score is not None and instance.score >= score_threshold


# :func:`counts_as_annotation` as an SQL condition on the store's ``instances`` table (its one parameter:
# the score threshold), so a count over the whole project is one query that agrees with the rule.
ANNOTATION_SQL = (
    f"iscrowd = 0 AND (provenance != '{Provenance.PREDICTED.value}' OR (score IS NOT NULL AND score >= ?))"
)


def annotations_of(instances: Iterable[InstanceT], score_threshold: float) -> list[InstanceT]:
    """The instances that count as annotations (see :func:`counts_as_annotation`), in their order."""
    return [r for r in instances if counts_as_annotation(r, score_threshold)]


def crowd_regions_of(instances: Iterable[InstanceT]) -> list[InstanceT]:
    """The image's crowd regions (see :func:`is_crowd_region`), in their order."""
    return [r for r in instances if is_crowd_region(r)]
