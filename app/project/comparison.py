"""Old model version against new on the same validation images: the rows of the table, and the verdict.

Plain data (no Qt, no torch). The metrics are the evaluator's dicts
(``{"segm": {"ap": ..., "per_class_ap": [{"category_id", "name", "ap"}]}, "bbox": {...}}``).

The verdict protects what the base model knew: a new version becomes active by itself only when its
overall mask AP beats the base's *and* its mask AP on the known classes (the base's classes that the
validation images show) drops by no more than :data:`KNOWN_CLASSES_MAX_AP_LOSS`. Fine-tuning a whole
network on a few images of new classes can trade the old classes away for them; the person can still
switch to such a version by hand.

The comparison means nothing when the validation truth is mostly the base model's own predictions,
accepted as it made them: the base is then scored against itself (mask AP near 1) and no new version can
score better. Above :data:`BASE_OWN_TRUTH_MAX_SHARE` of such instances the verdict says so, and asks for a
few corrections first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from app.project.records import InstanceRecord
from app.project.truth import is_accepted_prediction_of

#: the most mask AP the known classes may lose for a new version to become active by itself
KNOWN_CLASSES_MAX_AP_LOSS = 0.02
#: above this share of the validation truth being the base model's own accepted predictions, the
#: comparison cannot show an improvement ("all or mostly": more than half)
BASE_OWN_TRUTH_MAX_SHARE = 0.5
# The names of the table's summary rows.
ALL_CLASSES = "all classes"
KNOWN_CLASSES = "known classes"
NEW_CLASSES = "new classes"


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the table: ``name`` is a summary row (:data:`ALL_CLASSES`, :data:`KNOWN_CLASSES`,
    :data:`NEW_CLASSES`) or a class name; APs in ``[0, 1]`` or ``None``."""

    name: str
    base_ap: float | None
    new_ap: float | None

    @property
    def delta(self) -> float | None:
        if self.base_ap is None or self.new_ap is None:
            return None
        return self.new_ap - self.base_ap


@dataclass(frozen=True)
class Comparison:
    """Mask AP of ``base_name`` and ``new_name`` on ``num_images`` validation images.

    ``known_classes`` are the base's classes the validation images show, ``new_classes`` the others they
    show; both are empty when the base's classes were not given (a run recorded before they were kept).
    """

    base_name: str
    new_name: str
    num_images: int
    rows: tuple[ComparisonRow, ...]
    base_error: str = ""  # why the base model could not be evaluated ("" when it was)
    known_classes: tuple[str, ...] = ()
    new_classes: tuple[str, ...] = ()
    # the share of the validation truth that is the base's own predictions, accepted as it made them
    # (:func:`base_own_truth_share`); ``None`` when not known (a run recorded before it was kept)
    base_own_truth_share: float | None = None

    @property
    def overall(self) -> ComparisonRow:
        return self.rows[0]

    def row(self, name: str) -> ComparisonRow | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def known_classes_loss(self) -> float | None:
        """How much mask AP the known classes lost (negative: gained); ``None`` when it is not known."""
        known = self.row(KNOWN_CLASSES)
        delta = known.delta if known is not None else None
        return None if delta is None else -delta

    @property
    def forgets_known_classes(self) -> bool:
        """The known classes lose more than :data:`KNOWN_CLASSES_MAX_AP_LOSS` mask AP."""
        loss = self.known_classes_loss
        # rounded: APs are means of floats, and a loss of exactly the limit must not read as more
        return loss is not None and round(loss, 9) > KNOWN_CLASSES_MAX_AP_LOSS

    @property
    def activates(self) -> bool:
        """Whether the new version becomes the active model by itself: it is better and keeps what the base
        knew."""
        return self.new_is_better and not self.forgets_known_classes

    @property
    def scored_against_itself(self) -> bool:
        """The validation truth is mostly the base's own accepted predictions: no improvement can show."""
        return is_mostly_base_output(self.base_own_truth_share)

    @property
    def truth_caveat(self) -> str:
        """One line on why the comparison cannot show an improvement ("" when it can)."""
        return own_truth_caveat(self.base_name, self.base_own_truth_share)

    @property
    def verdict(self) -> str:
        """What happens to the new version, and why (after :attr:`truth_caveat`, when there is one)."""
        caveat = self.truth_caveat
        return f"{caveat} {self._outcome}" if caveat else self._outcome

    @property
    def _outcome(self) -> str:
        new, base = self.new_name, self.base_name
        if self.activates:
            return f"{new} scores better than {base}: it becomes the active model."
        if self.new_is_better:  # better overall, but it forgets
            return (
                f"{new} loses {self.known_classes_loss:.3f} mask AP on the classes {base} knew "
                f"(more than {KNOWN_CLASSES_MAX_AP_LOSS:g}), so it is not activated; {base} stays active."
            )
        why = f" ({self.base_error})" if self.base_error else ""
        return f"{new} does not score better than {base}{why}; {base} stays active."

    @property
    def new_is_better(self) -> bool:
        """The new version's overall mask AP beats the base's (or the base could not be scored at all)."""
        new, base = self.overall.new_ap, self.overall.base_ap
        if new is None:
            return False
        return (base is None and bool(self.base_error)) or (base is not None and new > base)


def base_own_truth_share(truth: Iterable[InstanceRecord], base_version_id: int | None) -> float | None:
    """The share of ``truth`` (the validation images' instances that count as annotations) that the base
    version predicted and a person left or accepted as it was; ``None`` for no instances."""
    instances = list(truth)
    if not instances:
        return None
    own = sum(is_accepted_prediction_of(r, base_version_id) for r in instances)
    return own / len(instances)


def is_mostly_base_output(share: float | None) -> bool:
    """More than :data:`BASE_OWN_TRUTH_MAX_SHARE` of the validation truth is the base's own accepted
    predictions (see :func:`base_own_truth_share`)."""
    return share is not None and share > BASE_OWN_TRUTH_MAX_SHARE


def own_truth_caveat(base_name: str, share: float | None) -> str:
    """One line on why comparing with ``base_name`` cannot show an improvement ("" when it can): shown
    before a run (the fine-tune dialog) and with its comparison."""
    if share is None or not is_mostly_base_output(share):
        return ""
    return (
        f"The validation images were accepted as {base_name} predicted them ({share:.0%} of their "
        f"instances), so {base_name} is scored against itself and the comparison cannot show an "
        "improvement: correct a few of them first."
    )


def mask_ap(metrics: dict | None) -> float | None:
    """The overall mask AP of an evaluator dict, ``None`` when absent."""
    value = ((metrics or {}).get("segm") or {}).get("ap")
    return None if value is None else float(value)


def compare(
    base_name: str,
    base_metrics: dict | None,
    new_name: str,
    new_metrics: dict | None,
    *,
    base_error: str = "",
    base_classes: Collection[str] | None = None,
    base_own_truth_share: float | None = None,
) -> Comparison:
    """The comparison table: overall mask AP first, then per class (matched by class name).

    With ``base_classes`` (the names of the classes the base model predicts: its class map, COCO's for
    COCO weights) two rows follow the overall one: the known classes (those of them the validation images
    show), base AP against new AP, and the new classes (the others the images show), the new version's AP.
    Each is the mean of its classes' APs, as COCO's AP is the mean over classes.
    ``base_own_truth_share``: see :func:`base_own_truth_share`.
    """
    base_per_class, new_per_class = _per_class(base_metrics), _per_class(new_metrics)
    names = list(new_per_class) + [n for n in base_per_class if n not in new_per_class]
    rows = [ComparisonRow(ALL_CLASSES, mask_ap(base_metrics), mask_ap(new_metrics))]
    known: list[str] = []
    new: list[str] = []
    if base_classes is not None:
        knew = set(base_classes)
        known = [n for n in names if n in knew]
        new = [n for n in names if n not in knew]
        rows.append(ComparisonRow(KNOWN_CLASSES, _mean(base_per_class, known), _mean(new_per_class, known)))
        rows.append(ComparisonRow(NEW_CLASSES, None, _mean(new_per_class, new)))
    rows += [ComparisonRow(n, base_per_class.get(n), new_per_class.get(n)) for n in names]
    num_images = int((new_metrics or base_metrics or {}).get("num_images", 0))
    return Comparison(
        base_name,
        new_name,
        num_images,
        tuple(rows),
        base_error,
        tuple(known),
        tuple(new),
        base_own_truth_share,
    )


def _per_class(metrics: dict | None) -> dict[str, float | None]:
    """Mask AP by class name, for the classes the validation images show."""
    entries = ((metrics or {}).get("segm") or {}).get("per_class_ap") or []
    return {str(e["name"]): (None if e.get("ap") is None else float(e["ap"])) for e in entries}


def _mean(per_class: dict[str, float | None], names: Collection[str]) -> float | None:
    values = [v for n in names if (v := per_class.get(n)) is not None]
    return sum(values) / len(values) if values else None
