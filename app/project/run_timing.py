"""How long fine-tuning takes here: measured from a run's training events, and estimated for the next run.

Plain data (no Qt, no torch). A run's timing is what its events measured on this machine: seconds per
optimizer step (from the progress events' elapsed time, so validation and checkpoints are included, as the
person waits for them too) and, for the ``heads`` tier, the seconds its feature pass took (the caching
events). The fine-tune controller keeps it in the run record's metrics under :data:`TIMING`. An estimate
for a new run is only ever made from such a measurement: with none for the tier and device, there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from maskrcnn_core.protocol import CachingEvent, ProgressEvent, StartEvent, TrainingEvent

TIMING = "timing"  # the key of a run record's metrics that holds its RunTiming


@dataclass(frozen=True)
class RunTiming:
    """What one run measured: ``tier`` it trained, on a GPU or not, with ``batch_size`` images per step on
    ``train_images`` images; ``caching_s`` is the heads tier's feature pass (0 for the full tier)."""

    run_name: str
    tier: str
    on_gpu: bool
    batch_size: int
    train_images: int
    seconds_per_step: float
    caching_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object) -> RunTiming | None:
        """The timing a run record kept, or ``None`` when it holds none (or one this version cannot read)."""
        if not isinstance(values, dict):
            return None
        try:
            timing = cls(**{f.name: values[f.name] for f in fields(cls)})
        except (KeyError, TypeError):
            return None
        usable = timing.seconds_per_step > 0 and timing.batch_size > 0 and timing.train_images > 0
        return timing if usable else None


class RunTimer:
    """Fed with a run's training events as they arrive; :meth:`timing` is what they measured so far.

    Steps are timed between progress events of one process (the first step, which also warms up, starts
    the clock), so a resumed run adds its own steps without counting the pause.
    """

    def __init__(self, *, run_name: str, on_gpu: bool, batch_size: int, train_images: int) -> None:
        self.run_name = run_name
        self.on_gpu = on_gpu
        self.batch_size = batch_size
        self.train_images = train_images
        self.tier = ""
        self.caching_s = 0.0
        self._seconds = 0.0  # over the finished stretches of steps
        self._steps = 0
        self._first: ProgressEvent | None = None  # of the process now running
        self._last: ProgressEvent | None = None

    def add(self, event: TrainingEvent) -> None:
        if isinstance(event, StartEvent):
            self._close_stretch()
            self.tier = event.tier
            self.train_images = event.num_train_images or self.train_images
            self.batch_size = event.global_batch or self.batch_size
        elif isinstance(event, CachingEvent):
            self.caching_s = max(self.caching_s, event.elapsed_s)
        elif isinstance(event, ProgressEvent):
            if self._first is None:
                self._first = event
            self._last = event

    def timing(self) -> RunTiming | None:
        """The measurement, or ``None`` before two steps of one process were timed."""
        seconds, steps = self._seconds, self._steps
        first, last = self._first, self._last
        if first is not None and last is not None and last.iteration > first.iteration:
            seconds += last.elapsed_s - first.elapsed_s
            steps += last.iteration - first.iteration
        if steps <= 0 or seconds <= 0 or not self.tier:
            return None
        return RunTiming(
            run_name=self.run_name,
            tier=self.tier,
            on_gpu=self.on_gpu,
            batch_size=self.batch_size,
            train_images=self.train_images,
            seconds_per_step=seconds / steps,
            caching_s=self.caching_s,
        )

    def _close_stretch(self) -> None:
        first, last = self._first, self._last
        if first is not None and last is not None and last.iteration > first.iteration:
            self._seconds += last.elapsed_s - first.elapsed_s
            self._steps += last.iteration - first.iteration
        self._first = self._last = None


@dataclass(frozen=True)
class TimeEstimate:
    """How long a run will take, from ``source``'s measurement: its steps and, for heads, its caching."""

    training_s: float
    caching_s: float
    source: RunTiming

    @property
    def total_s(self) -> float:
        return self.training_s + self.caching_s


def estimate_run_time(
    measured: Sequence[RunTiming],
    *,
    tier: str,
    on_gpu: bool,
    train_images: int,
    iterations: int,
    batch_size: int,
) -> TimeEstimate | None:
    """The time a run of ``iterations`` steps of ``tier`` will take, from the measured run of the same tier
    on the same kind of device whose image count is closest (the latest of equals); ``None`` when no
    run was measured so. A step's time scales with the images in it, the feature pass with the images."""
    same = [t for t in measured if t.tier == tier and t.on_gpu == on_gpu]
    if not same or iterations < 1 or batch_size < 1:
        return None
    source = min(reversed(same), key=lambda t: abs(t.train_images - train_images))
    training_s = source.seconds_per_step * batch_size / source.batch_size * iterations
    caching_s = source.caching_s * train_images / source.train_images if tier == "heads" else 0.0
    return TimeEstimate(training_s, caching_s, source)
