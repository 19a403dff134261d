"""Old model version against new on the same validation images: the rows of the table, and the verdict.

Plain data (no Qt, no torch). The metrics are the evaluator's dicts
(``{"segm": {"ap": ..., "per_class_ap": [{"category_id", "name", "ap"}]}, "bbox": {...}}``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the table: ``name`` is "all classes" or a class name; APs in ``[0, 1]`` or ``None``."""

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
    """Mask AP of ``base_name`` and ``new_name`` on ``num_images`` validation images."""

    base_name: str
    new_name: str
    num_images: int
    rows: tuple[ComparisonRow, ...]
    base_error: str = ""  # why the base model could not be evaluated ("" when it was)

    @property
    def overall(self) -> ComparisonRow:
        return self.rows[0]

    @property
    def new_is_better(self) -> bool:
        """The new version's overall mask AP beats the base's (or the base could not be scored at all)."""
        new, base = self.overall.new_ap, self.overall.base_ap
        if new is None:
            return False
        return (base is None and bool(self.base_error)) or (base is not None and new > base)


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
) -> Comparison:
    """The comparison table: overall mask AP first, then per class (matched by class name)."""

    def per_class(metrics: dict | None) -> dict[str, float | None]:
        entries = ((metrics or {}).get("segm") or {}).get("per_class_ap") or []
        return {str(e["name"]): (None if e.get("ap") is None else float(e["ap"])) for e in entries}

    base_classes, new_classes = per_class(base_metrics), per_class(new_metrics)
    names = list(new_classes) + [n for n in base_classes if n not in new_classes]
    rows = [ComparisonRow("all classes", mask_ap(base_metrics), mask_ap(new_metrics))]
    rows += [ComparisonRow(n, base_classes.get(n), new_classes.get(n)) for n in names]
    num_images = int((new_metrics or base_metrics or {}).get("num_images", 0))
    return Comparison(base_name, new_name, num_images, tuple(rows), base_error)
