"""Fine-tuning from the window: settings, the run's life cycle, and the new model version (QtCore only).

:class:`FinetuneController` writes the training set of the project's checked images into
``<project dir>/runs/<run>/``, starts ``python -m maskrcnn_core train ... --progress jsonl`` (a
:class:`~maskrcnn_core.protocol.TrainRequest`, see :func:`train_request`) through a
:class:`~app.workers.training_runner.TrainingRunner` and, at the same time, scores the base model on the
same validation images with ``python -m maskrcnn_core evaluate`` (a second child process: torch never
loads in the window's process). When the run has finished the new checkpoint becomes a model version of the
project, the two mask APs are compared (overall, and on the classes the base knew and the new ones apart),
and the new version is proposed to the :class:`~app.session.model_registry.ModelRegistry`, which makes it
active when the comparison's verdict says so (or when the user does). A finished run's measured step and
caching times are kept with its record, for the next run's estimate (:mod:`app.project.run_timing`). Run
records are read and written through the registry too. Cancel keeps the last checkpoint; a cancelled,
failed or interrupted run resumes with the same request plus ``--resume``. The project and the active
model are never touched by a failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from app.project.comparison import Comparison, base_own_truth_share, compare
from app.project.file_hash import file_sha256
from app.project.records import ImageStatus, InstanceRecord, ModelVersionRecord
from app.project.run_timing import TIMING, RunTimer, RunTiming, TimeEstimate, estimate_run_time
from app.project.training_set import (
    DEFAULT_VAL_FRACTION,
    TrainingSet,
    build_training_set,
    ground_truth_for_model,
)
from app.project.truth import annotations_of
from app.session.document import Document
from app.session.model_registry import ModelRegistry
from app.session.run_history import (
    BASE_CLASSES,
    BASE_ERROR,
    BASE_MODEL,
    BASE_OWN_TRUTH_SHARE,
    BASE_VALIDATION,
    VALIDATION,
    PastRun,
    last_run,
    stored_share,
)
from app.workers.training_runner import EvaluationRunner, RunOutcome, TrainingRunner
from maskrcnn_core.paths import PROJECT_RUNS_DIR
from maskrcnn_core.protocol import (
    LAST_CHECKPOINT,
    EvaluateRequest,
    RunStatus,
    StartEvent,
    TrainingEvent,
    TrainRequest,
    default_lr,
    iterations_of_run,
    resolve_tier,
)

TRAIN_LOG = "train.log"
VALIDATIONS_PER_RUN = 4  # when the settings do not say: the Training panel's AP curve gets four points
CHECKPOINTS_PER_RUN = 10  # when the settings do not say: a crash loses at most a tenth of the run
TIER_NAMES = {"heads": "heads only", "full": "full"}  # how the window names the tier a run trains
BASE_EVAL_LOG = "evaluate_base.log"


@dataclass(frozen=True)
class FinetuneSettings:
    """What the Fine-tune dialog asks; the defaults make a one-click run sensible.

    ``iterations`` wins over ``epochs``. ``lr`` ``None``: :func:`finetune_learning_rate`.
    ``trainable_backbone_layers`` counts backbone stages that train, from the last (``None``: the model's
    own policy). ``eval_every`` / ``checkpoint_every`` ``None``: :data:`VALIDATIONS_PER_RUN` validations
    and :data:`CHECKPOINTS_PER_RUN` checkpoints per run (``eval_every`` 0: validation at the end only).
    ``tier`` is what trains (a key of :data:`~maskrcnn_core.protocol.TIERS`; ``auto``:
    :func:`~maskrcnn_core.protocol.resolve_tier`).
    ``request_options`` are further :class:`~maskrcnn_core.protocol.TrainRequest` fields, e.g.
    ``(("min_size", 128),)``.
    """

    base_version_id: int
    name: str = ""
    statuses: tuple[ImageStatus, ...] = (ImageStatus.VERIFIED, ImageStatus.CORRECTED)
    val_fraction: float = DEFAULT_VAL_FRACTION
    iterations: int | None = None
    epochs: float | None = 10.0
    lr: float | None = None
    batch_size: int = 2
    trainable_backbone_layers: int | None = None
    device: str = "auto"
    num_threads: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    tier: str = TrainRequest.tier
    request_options: tuple[tuple[str, object], ...] = ()

    def total_iterations(self, num_train_images: int) -> int:
        """Optimizer steps of the run (the engine's rule; the app trains in one process)."""
        return iterations_of_run(self.iterations, self.epochs, num_train_images, self.batch_size)


def finetune_learning_rate(batch_size: int, lr: float | None = None) -> float:
    """The learning rate of a fine-tune started from the menu: the one the user gave, else the engine's
    default for the batch (:func:`maskrcnn_core.protocol.default_lr`; the app trains in one process, so
    the batch is the global batch). The run is always started with this rate written out."""
    return lr if lr is not None else default_lr(batch_size)


def trains_on_gpu(device: str, gpu_available: bool) -> bool:
    """Whether a run with the ``device`` setting trains on a GPU, where this machine has one when
    ``gpu_available`` (the app knows it from the device the inference worker built its model on: the
    window never loads torch to ask)."""
    return device == "cuda" or (device == "auto" and gpu_available)


def expected_tier(settings: FinetuneSettings, *, gpu_available: bool, num_train_images: int) -> str:
    """The tier a run with ``settings`` trains (the engine's rule for ``auto``, on this machine)."""
    on_gpu = trains_on_gpu(settings.device, gpu_available)
    return resolve_tier(settings.tier, on_gpu=on_gpu, num_train_images=num_train_images)


@dataclass
class _Run:
    """The run in progress (or the last one), enough to resume it after the app was closed."""

    id: int
    name: str
    run_dir: Path
    request: TrainRequest
    base: ModelVersionRecord
    val_json: str
    val_images: int
    train_images: int
    categories: list[list]
    evaluate_request: EvaluateRequest
    on_gpu: bool = False  # where the app expected it to train (for its timing)
    base_own_truth_share: float | None = None  # see app.project.comparison.base_own_truth_share
    base_metrics: dict | None = None
    base_error: str = ""
    new_metrics: dict | None = None
    outcome: RunOutcome | None = None
    metrics: dict = field(default_factory=dict)

    def config(self) -> dict:
        return {
            "name": self.name,
            "run_dir": str(self.run_dir),
            "request": self.request.to_dict(),
            "evaluate_request": asdict(self.evaluate_request),
            "val_json": self.val_json,
            "num_train_images": self.train_images,
            "num_val_images": self.val_images,
            "categories": self.categories,
            "on_gpu": self.on_gpu,
            BASE_OWN_TRUTH_SHARE: self.base_own_truth_share,
        }


class FinetuneController(QObject):
    """One fine-tuning run at a time for the open project (a child of its document)."""

    runStarted = Signal(dict)  # {"run_id", "name", "train_images", "val_images", "iterations", "run_dir"}
    trainingEvent = Signal(object)  # every training event of the process (maskrcnn_core.protocol)
    runEnded = Signal(object)  # RunOutcome
    comparisonReady = Signal(object)  # Comparison
    resumableChanged = Signal(bool)
    message = Signal(str)

    _hashed = Signal(str, str)  # path, sha256 (from the thread pool)

    def __init__(self, document: Document, registry: ModelRegistry, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.store = document.store
        self.registry = registry
        self.runner = TrainingRunner(self)
        self.base_evaluation = EvaluationRunner(self)
        self.runner.trainingEvent.connect(self.trainingEvent)
        self.runner.trainingEvent.connect(self._time_event)
        self.runner.trainingEvent.connect(self._tell_notice)
        self.runner.finished.connect(self._on_training_finished)
        self.base_evaluation.finished.connect(self._on_base_evaluated)
        self._hashed.connect(self._on_hashed)
        self.run: _Run | None = None
        self.new_version_id: int | None = None
        self.comparison: Comparison | None = None
        self._timer: RunTimer | None = None
        self._recover_interrupted_runs()
        self.past_run: PastRun | None = last_run(registry)  # what the Training panel shows on opening
        if self.past_run is not None and self.past_run.comparison is not None:
            self.new_version_id = self.past_run.run.output_model_version_id
            self.comparison = self.past_run.comparison

    # ------------------------------------------------------------------------------------------ queries
    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def runs_dir(self) -> Path:
        """``<project dir>/runs``: next to the project file, so a read-only images folder works too."""
        return self.store.db_path.parent / PROJECT_RUNS_DIR

    def base_candidates(self) -> list[ModelVersionRecord]:
        """Model versions whose checkpoint file is still there, newest first."""
        return [v for v in reversed(self.registry.versions()) if v.path and Path(v.path).is_file()]

    def is_new_version(self, version_id: int | None) -> bool:
        """Whether ``version_id`` is the model version the last run produced."""
        return version_id is not None and version_id == self.new_version_id

    @property
    def last_tier(self) -> str:
        """The tier the last fine-tune of the project asked for (the dialog offers it again)."""
        return self.document.settings.finetune_tier

    def measured_timings(self) -> list[RunTiming]:
        """What the project's runs measured on this machine, oldest first."""
        timings = (RunTiming.from_dict(r.metrics.get(TIMING)) for r in self.registry.runs())
        return [t for t in timings if t is not None]

    def own_truth_share(self, base_version_id: int, val_names: Sequence[str]) -> float | None:
        """The share of the truth of the validation images ``val_names`` that version ``base_version_id``
        predicted and a person left or accepted as it was (see
        :func:`~app.project.comparison.base_own_truth_share`), before a run: the dialog warns with it."""
        truth: list[InstanceRecord] = []
        for name in val_names:
            image = self.store.image_by_name(name)
            if image is not None:
                truth += annotations_of(self.store.instances(image.id), self.document.score_threshold)
        return base_own_truth_share(truth, base_version_id)

    def estimate(
        self, settings: FinetuneSettings, *, gpu_available: bool, num_train_images: int
    ) -> TimeEstimate | None:
        """How long a run with ``settings`` on ``num_train_images`` images takes, from a measured run;
        ``None`` when no run of its tier on this kind of device was measured yet."""
        return estimate_run_time(
            self.measured_timings(),
            tier=expected_tier(settings, gpu_available=gpu_available, num_train_images=num_train_images),
            on_gpu=trains_on_gpu(settings.device, gpu_available),
            train_images=num_train_images,
            iterations=settings.total_iterations(num_train_images),
            batch_size=settings.batch_size,
        )

    def can_resume(self) -> bool:
        run = self.run
        return (
            run is not None
            and not self.running
            and run.outcome is not None
            and run.outcome.status is not RunStatus.FINISHED
            and (run.run_dir / LAST_CHECKPOINT).is_file()
        )

    # ------------------------------------------------------------------------------------------ actions
    def start(self, settings: FinetuneSettings, *, gpu_available: bool = False) -> int:
        """Write the training set and start the run; returns its id. ``gpu_available``: the machine has a
        GPU (see :func:`trains_on_gpu`); it only labels the run's timing, the engine picks the device.

        Raises :class:`~app.project.training_set.TrainingSetError` (a ``ValueError``) when the project
        cannot be trained on yet, ``ValueError`` for an unknown base version, ``RuntimeError`` while a run
        is going.
        """
        if self.running:
            raise RuntimeError("a fine-tuning run is already going; cancel it first")
        base = self.registry.version(settings.base_version_id)
        if base is None or not base.path or not Path(base.path).is_file():
            raise ValueError("the base model's checkpoint file is missing; load a model first")
        name = settings.name.strip() or f"{base.name}-ft{len(self.registry.runs()) + 1}"
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = self.runs_dir / f"{stamp}-{_slug(name)}"
        training_set = build_training_set(
            self.store,
            run_dir,
            statuses=settings.statuses,
            val_fraction=settings.val_fraction,
            keep_classes=[n for _, n in base.categories],
            score_threshold=self.document.score_threshold,
        )
        total = settings.total_iterations(len(training_set.train_images))
        request = train_request(settings, training_set, base, run_dir, name, total)
        evaluate_request = self._base_evaluate_request(settings, training_set, base, run_dir)
        run = _Run(
            id=0,
            name=name,
            run_dir=run_dir,
            request=request,
            base=base,
            val_json=str(training_set.val_json),
            val_images=len(training_set.val_images),
            train_images=len(training_set.train_images),
            categories=[list(c) for c in training_set.categories],
            evaluate_request=evaluate_request,
            on_gpu=trains_on_gpu(settings.device, gpu_available),
            base_own_truth_share=base_own_truth_share(training_set.val_truth, base.id),
        )
        config = {**_plain_settings(settings), **run.config(), "iterations": total}
        run.id = self.registry.start_run(base_version_id=base.id, config=config)
        self.document.settings.finetune_tier = settings.tier
        self.base_evaluation.shutdown()  # a previous run's scoring must not be taken for this run's
        self._begin(run, request, total)
        return run.id

    def resume(self) -> None:
        """Continue the last cancelled or failed run from its last checkpoint (the same request)."""
        run = self.run
        if not self.can_resume() or run is None:
            raise RuntimeError("there is no interrupted run with a checkpoint to resume")
        self.registry.resume_run(run.id)
        record = self.registry.run(run.id)
        total = record.config.get("iterations", 0) if record is not None else 0
        self._begin(run, run.request.resumed(), int(total))

    def cancel(self) -> None:
        """Stop the run cleanly: it writes its last checkpoint, which :meth:`resume` continues from."""
        if self.running:
            self.message.emit("Stopping the training run (it saves its last checkpoint first)…")
            self.runner.cancel()

    def use_new_version(self) -> None:
        """Make the run's new model version active although it did not score better."""
        if self.new_version_id is not None:
            try:
                self.registry.activate(self.new_version_id)
            except ValueError as exc:
                self.message.emit(str(exc))

    def shutdown(self) -> None:
        """Stop the child processes (the training run saves a checkpoint): the project is closing."""
        self.base_evaluation.shutdown()
        self.runner.shutdown()

    # --------------------------------------------------------------------------------------- internals
    def _begin(self, run: _Run, request: TrainRequest, total: int) -> None:
        self.run = run
        self.new_version_id = None
        self.comparison = None
        run.outcome = None
        if self._timer is None or self._timer.run_name != run.name:  # a resumed run adds to its timing
            self._timer = RunTimer(
                run_name=run.name,
                on_gpu=run.on_gpu,
                batch_size=run.request.batch_size,
                train_images=run.train_images,
            )
        self.runner.start(request, workdir=run.run_dir, log_path=run.run_dir / TRAIN_LOG)
        if run.base_metrics is None and not self.base_evaluation.running:
            run.base_error = ""
            self.base_evaluation.start(
                run.evaluate_request, workdir=run.run_dir, log_path=run.run_dir / BASE_EVAL_LOG
            )
        self.resumableChanged.emit(False)
        self.runStarted.emit(
            {
                "run_id": run.id,
                "name": run.name,
                "train_images": run.train_images,
                "val_images": run.val_images,
                "iterations": total,
                "run_dir": str(run.run_dir),
                "base": run.base.name,
            }
        )
        self.message.emit(
            f"Fine-tuning {run.name} from {run.base.name} on {run.train_images} images "
            f"({run.val_images} for validation)"
        )

    def _base_evaluate_request(
        self, settings: FinetuneSettings, training_set: TrainingSet, base: ModelVersionRecord, run_dir: Path
    ) -> EvaluateRequest:
        gt = ground_truth_for_model(training_set.val_json, base.categories, run_dir / "val_for_base.json")
        return EvaluateRequest(
            gt=str(gt),
            weights=str(base.path),
            images=str(self.store.images_dir),
            device=settings.device,
            num_threads=settings.num_threads,
        )

    def _on_training_finished(self, outcome: RunOutcome) -> None:
        run = self.run
        if run is None:
            return
        run.outcome = outcome
        if outcome.status is RunStatus.FINISHED:
            run.new_metrics = outcome.validation
            run.metrics = {
                VALIDATION: outcome.validation,
                "final_losses": outcome.losses,
                "model": outcome.model_path,
            }
            timing = self._timer.timing() if self._timer is not None else None
            if timing is not None:
                run.metrics[TIMING] = timing.to_dict()
            self.registry.finish_run(run.id, RunStatus.FINISHED, run.metrics)
            self.message.emit(f"Fine-tuning {run.name} finished; registering the new model version…")
            path = str(outcome.model_path)
            QThreadPool.globalInstance().start(lambda: self._hashed.emit(path, file_sha256(path)))
        else:
            status = outcome.status
            metrics = {"error": outcome.message, "checkpoint": outcome.checkpoint}
            self.registry.finish_run(run.id, status, metrics)
            if status is RunStatus.CANCELLED:
                self.message.emit(f"Fine-tuning {run.name} cancelled; its last checkpoint is kept")
            else:
                self.message.emit(f"Fine-tuning {run.name} failed: {outcome.message}")
            self.resumableChanged.emit(self.can_resume())
        self.runEnded.emit(outcome)

    def _on_hashed(self, path: str, sha256: str) -> None:
        run = self.run
        if run is None or run.outcome is None or run.outcome.model_path != path:
            return
        self.new_version_id = self.registry.register(
            name=run.name,
            arch=run.base.arch,
            path=path,
            sha256=sha256,
            categories=[(int(i), str(n)) for i, n in run.categories],
            training_run_id=run.id,
        )
        self._compare_when_ready()

    def _on_base_evaluated(self, metrics: dict, error: str) -> None:
        run = self.run
        if run is None:
            return
        run.base_metrics, run.base_error = (metrics or None), error
        if error:
            self.message.emit(f"The base model could not be scored: {error}")
        self._compare_when_ready()

    def _compare_when_ready(self) -> None:
        run = self.run
        if run is None or self.new_version_id is None or self.base_evaluation.running:
            return
        if run.base_metrics is None and not run.base_error:
            return
        base_classes = [name for _, name in run.base.categories]
        comparison = compare(
            run.base.name,
            run.base_metrics,
            run.name,
            run.new_metrics,
            base_error=run.base_error,
            base_classes=base_classes,
            base_own_truth_share=run.base_own_truth_share,
        )
        self.comparison = comparison
        run.metrics = {
            **run.metrics,
            BASE_VALIDATION: run.base_metrics,
            BASE_ERROR: run.base_error,
            BASE_MODEL: run.base.name,
            BASE_CLASSES: base_classes,
        }
        self.registry.finish_run(run.id, RunStatus.FINISHED, run.metrics)
        self.comparisonReady.emit(comparison)
        activated = self.registry.propose(self.new_version_id, comparison)
        self.message.emit(comparison.verdict + ("" if activated else " Use new version to switch anyway."))

    def _tell_notice(self, event: TrainingEvent) -> None:
        # what the run does not do of what it was asked (e.g. auto chose heads, which freezes the backbone)
        if isinstance(event, StartEvent) and event.notice:
            self.message.emit(event.notice)

    def _time_event(self, event: TrainingEvent) -> None:
        if self._timer is not None:
            self._timer.add(event)

    def _recover_interrupted_runs(self) -> None:
        """A run still marked running belongs to an app that was closed or killed: mark it failed, and
        offer to resume the latest unfinished run that left a checkpoint."""
        versions = {v.id: v for v in self.registry.versions()}
        for record in self.registry.runs():
            if record.status is RunStatus.RUNNING:
                self.registry.finish_run(
                    record.id, RunStatus.FAILED, {"error": "the app closed during training"}
                )
        unfinished = [r for r in self.registry.runs() if r.status in (RunStatus.CANCELLED, RunStatus.FAILED)]
        if not unfinished:
            return
        record = unfinished[-1]
        config = record.config
        base_id = record.base_model_version_id
        base = versions.get(base_id) if base_id is not None else None
        if base is None or "request" not in config or not config.get("run_dir"):
            return  # not resumable from the app (e.g. recorded by an older version, which kept an argv)
        try:
            request = TrainRequest.from_dict(config["request"])
            evaluate_request = EvaluateRequest(**config["evaluate_request"])
        except (KeyError, TypeError, ValueError):
            return  # a record this version cannot read: the run stays listed, only not offered for resume
        self.run = _Run(
            id=record.id,
            name=config["name"],
            run_dir=Path(config["run_dir"]),
            request=request,
            base=base,
            val_json=config["val_json"],
            val_images=int(config["num_val_images"]),
            train_images=int(config["num_train_images"]),
            categories=list(config["categories"]),
            evaluate_request=evaluate_request,
            on_gpu=bool(config.get("on_gpu", False)),
            base_own_truth_share=stored_share(config.get(BASE_OWN_TRUTH_SHARE)),
            outcome=RunOutcome(RunStatus.FAILED, None, message=str(record.metrics.get("error", ""))),
        )


def train_request(
    settings: FinetuneSettings,
    training_set: TrainingSet,
    base: ModelVersionRecord,
    run_dir: Path,
    name: str,
    total: int,
) -> TrainRequest:
    """The ``python -m maskrcnn_core train`` request of a run from the base version's weights."""
    eval_every = settings.eval_every
    if eval_every is None:
        eval_every = max(1, total // VALIDATIONS_PER_RUN)
    request = TrainRequest(
        train_json=str(training_set.train_json),
        val_json=str(training_set.val_json),
        images=str(training_set.images_dir),
        out=str(run_dir),
        weights=str(base.path),
        name=name,
        progress="jsonl",
        iterations=settings.iterations,
        epochs=settings.epochs if settings.iterations is None else None,
        batch_size=settings.batch_size,
        lr=finetune_learning_rate(settings.batch_size, settings.lr),
        trainable_backbone_layers=settings.trainable_backbone_layers,
        device=settings.device,
        num_threads=settings.num_threads or None,
        eval_every=eval_every if eval_every > 0 else None,
        checkpoint_every=settings.checkpoint_every or max(1, total // CHECKPOINTS_PER_RUN),
        tier=settings.tier,
    )
    options: dict[str, Any] = dict(settings.request_options)
    try:
        return replace(request, **options)
    except TypeError as exc:  # a name TrainRequest does not have
        raise ValueError(f"fine-tune options: {exc}") from None


def _plain_settings(settings: FinetuneSettings) -> dict:
    plain = asdict(settings)
    plain["statuses"] = [str(s) for s in settings.statuses]
    plain["request_options"] = [list(option) for option in settings.request_options]
    return plain


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "run"
