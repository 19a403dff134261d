"""The truth rule: which instances of an image count as its annotations (no Qt, no torch).

An image's truth is what a person sees on it and stands behind: every instance a person made or touched
(edited, verified, imported) and the model's untouched predictions that score at least the score threshold
(those are shown, and leaving them in place accepts them). The canvas, the COCO export and the fine-tuning
set all ask this module, so what is shown is what is exported and what is trained on.

Untouched predictions are also the only instances a model run or an import may replace
(:func:`is_untouched_prediction`); a person's work is never removed by either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from app.project.records import Provenance


class _Instance(Protocol):
    """What the rule looks at: a stored ``InstanceRecord`` or a ``NewInstance`` about to be written."""

    @property
    def provenance(self) -> Provenance: ...

    @property
    def score(self) -> float | None: ...


InstanceT = TypeVar("InstanceT", bound=_Instance)


def is_untouched_prediction(instance: _Instance) -> bool:
    """A model's instance that nobody has edited or verified: the only kind a model run or an import
    replaces."""
    return Provenance(instance.provenance) is Provenance.PREDICTED


def counts_as_annotation(instance: _Instance, score_threshold: float) -> bool:
    """Whether the instance is part of its image's truth: a person's instance always is, an untouched
    prediction when its score is at least ``score_threshold``."""
    if not is_untouched_prediction(instance):
        return True
    return instance.score is not None and instance.score >= score_threshold


def annotations_of(instances: Iterable[InstanceT], score_threshold: float) -> list[InstanceT]:
    """The instances that count as annotations (see :func:`counts_as_annotation`), in their order."""
    return [r for r in instances if counts_as_annotation(r, score_threshold)]
