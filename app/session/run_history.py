"""A finished (or stopped) fine-tuning run as the Training panel shows it when a project opens again.

Everything comes from what the run left behind: its record in the store (settings, status, figures) and
its run folder's metrics log (every training event, one JSON line each). The keys of the record's
``metrics`` that the comparison is rebuilt from are named here, where the fine-tune controller writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.project.comparison import Comparison, compare
from app.project.records import TrainingRunRecord
from maskrcnn_core.protocol import METRICS_LOG, ProtocolError, RunStatus, TrainingEvent, parse_event

if TYPE_CHECKING:
    from app.session.model_registry import ModelRegistry

# Keys of a run record's ``metrics``.
VALIDATION = "validation"  # the new version's scores on the validation images
BASE_VALIDATION = "base_validation"  # the base version's scores on the same images (once it was scored)
BASE_ERROR = "base_error"  # why the base version could not be scored ("" when it was)
BASE_MODEL = "base_model"  # the base version's name
BASE_CLASSES = "base_classes"  # the names of the base version's classes (what it knew)
# Key of a run record's ``config``: the share of the validation truth that is the base version's own
# accepted predictions (``app.project.comparison.base_own_truth_share``), kept when the run starts.
BASE_OWN_TRUTH_SHARE = "base_own_truth_share"


@dataclass(frozen=True)
class PastRun:
    """The last training run of a project: what it was, its training events and its comparison."""

    run: TrainingRunRecord
    name: str
    base_name: str
    train_images: int
    val_images: int
    iterations: int
    run_dir: Path | None
    events: tuple[TrainingEvent, ...]
    comparison: Comparison | None  # ``None`` until the base and the new version were both scored

    @property
    def status(self) -> RunStatus:
        return self.run.status


def last_run(registry: ModelRegistry) -> PastRun | None:
    """The project's latest training run, or ``None`` when it has none."""
    record = registry.last_run()
    if record is None:
        return None
    config, metrics = record.config, record.metrics
    name = str(config.get("name") or f"run {record.id}")
    base = registry.version(record.base_model_version_id)
    base_name = base.name if base is not None else str(metrics.get(BASE_MODEL, "the base model"))
    run_dir = Path(config["run_dir"]) if config.get("run_dir") else None
    comparison = None
    if record.status is RunStatus.FINISHED and BASE_VALIDATION in metrics:
        comparison = compare(
            base_name,
            metrics.get(BASE_VALIDATION),
            name,
            metrics.get(VALIDATION),
            base_error=str(metrics.get(BASE_ERROR) or ""),
            base_classes=metrics.get(BASE_CLASSES),  # None for a run recorded before they were kept
            base_own_truth_share=stored_share(config.get(BASE_OWN_TRUTH_SHARE)),
        )
    return PastRun(
        run=record,
        name=name,
        base_name=base_name,
        train_images=int(config.get("num_train_images", 0)),
        val_images=int(config.get("num_val_images", 0)),
        iterations=int(config.get("iterations", 0)),
        run_dir=run_dir,
        events=read_metrics_log(run_dir / METRICS_LOG) if run_dir is not None else (),
        comparison=comparison,
    )


def read_metrics_log(path: Path) -> tuple[TrainingEvent, ...]:
    """The training events of a run's metrics log, in order. A missing file gives none; a line that is
    not an event (the half-written last line of a killed run) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    events = []
    for line in lines:
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except ProtocolError:
            continue
    return tuple(events)


def stored_share(value: object) -> float | None:
    """A stored share, ``None`` when absent (a run recorded before it was kept) or not a number."""
    return float(value) if isinstance(value, int | float) else None
