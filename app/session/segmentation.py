"""The GUI-thread side of auto-segmentation: sends jobs to the inference worker, applies what comes back.

Owns the worker's QThread. Never waits on the worker (except for a bounded wait when the window closes):
requests leave through queued signals, results come back through queued signals and are written to the
document one image at a time. Each job remembers every image's revision when it was submitted, so a
result for an image that a person edited meanwhile is dropped instead of overwriting the edit.
"""

from __future__ import annotations

import atexit
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from app.project.records import ImageResult
from app.project.store import StaleImageError, StoreError
from app.session.document import Document
from app.session.model_registry import ActiveModel, ModelRegistry
from app.workers.inference import BoxJob, InferenceWorker, Job, LoadedModel, PredictorFactory


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the average pace so far; ``None`` before the first image is segmented."""
    if done <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return elapsed / done * (total - done)


@dataclass
class _JobState:
    revisions: dict[int, int]
    model_version_id: int | None
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    applied: int = 0
    kept_edits: int = 0


# inference threads still finishing a model build after their window closed (see shutdown); the process
# waits for them before it exits, since a QThread destroyed while running aborts it
_finishing_threads: set[QThread] = set()


@atexit.register
def _wait_for_finishing_threads() -> None:
    for thread in list(_finishing_threads):
        thread.wait()


class SegmentationController(QObject):
    """Runs auto-segment jobs for the document's images with the registry's active model.

    It follows :attr:`ModelRegistry.activeChanged`: each announced model is built in the worker by
    ``predictor_factory(checkpoint path)``, and what the worker built is reported back to the registry,
    which registers it as a version. Nothing else loads a model into the worker.
    """

    modelChanged = Signal(object)  # LoadedModel
    modelFailed = Signal(str)
    busyChanged = Signal(bool)
    progressChanged = Signal(int, int, float)  # done, total, ETA in seconds (-1 when unknown)
    tileProgressChanged = Signal(int, int)  # tiles done, tiles of the large image being segmented
    message = Signal(str)  # one line for the status bar
    jobFinished = Signal(int, bool)  # job id, cancelled
    boxReady = Signal(int, object)  # box job id, ImageResult: the box-prompt tool's answer

    _loadRequested = Signal(object, str)  # PredictorFactory, checkpoint path
    _runRequested = Signal(object)
    _boxRequested = Signal(object)

    def __init__(
        self,
        document: Document,
        registry: ModelRegistry,
        predictor_factory: Callable[[str], PredictorFactory],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.document = document
        self.registry = registry
        self.model: LoadedModel | None = None
        self.model_version_id: int | None = None  # the registry's id of the model the worker holds
        self._predictor_factory = predictor_factory
        self._loading: deque[ActiveModel] = deque()  # announced models the worker has yet to build, in order
        self._last_requested: ActiveModel | None = None  # what reload_model builds again
        self._jobs: dict[int, _JobState] = {}
        self._next_job = 1
        self._thread = QThread(self)
        self._thread.setObjectName("inference")
        self._worker = InferenceWorker()
        self._worker.moveToThread(self._thread)
        self._loadRequested.connect(self._worker.load)
        self._runRequested.connect(self._worker.run)
        self._boxRequested.connect(self._worker.segment_box)
        self._worker.boxReady.connect(self.boxReady)
        self._worker.modelLoaded.connect(self._on_model_loaded)
        self._worker.modelFailed.connect(self._on_model_failed)
        self._worker.jobStarted.connect(self._on_job_started)
        self._worker.resultReady.connect(self._on_result)
        self._worker.imageFailed.connect(self._on_image_failed)
        self._worker.progress.connect(self._on_progress)
        self._worker.tileProgress.connect(self._on_tile_progress)
        self._worker.jobFinished.connect(self._on_job_finished)
        self._thread.finished.connect(self._worker.deleteLater)
        self._thread.start()
        registry.activeChanged.connect(self._load_active)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def no_model_reason(self) -> str:
        """Why there is no model to run, and what to do: the one wording of it for every action that needs
        one. While a model is being built (its first conversion can take a while) that is to wait, not to
        load another."""
        if self._loading:
            return f"the model is still loading ({Path(self._loading[-1].path).name}): try again in a moment"
        return "no model is loaded (Model ▸ Load weights…)"

    def segment(self, image_ids: Sequence[int], *, batch_size: int = 1) -> int | None:
        """Queue a job over ``image_ids``; returns its id, or ``None`` when there is nothing to do."""
        if not image_ids:
            return None
        job_id = self._next_job
        self._next_job += 1
        doc = self.document
        revisions = {i: doc.image(i).revision for i in image_ids}
        self._jobs[job_id] = _JobState(revisions, self.model_version_id)
        items = tuple((i, str(doc.image_path(i))) for i in image_ids)
        self._runRequested.emit(Job(job_id, items, batch_size, doc.settings.tile_options(), doc.project_dir))
        if len(self._jobs) == 1:
            self.busyChanged.emit(True)
        self.progressChanged.emit(0, len(items), -1.0)
        return job_id

    def segment_box(self, image_id: int, box: tuple[float, float, float, float], label: int | None) -> int:
        """Ask the worker for the model's mask in ``box``; the answer comes as ``boxReady(job id, ...)``."""
        job_id = self._next_job
        self._next_job += 1
        path = str(self.document.image_path(image_id))
        self._boxRequested.emit(BoxJob(job_id, image_id, path, box, label, self.document.project_dir))
        return job_id

    def cancel(self) -> None:
        """Stop every queued or running job; results already made are kept."""
        for job_id in list(self._jobs):
            self._worker.cancel(job_id)

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Cancel, stop the thread and wait for it (bounded): called once, when the window closes."""
        self.cancel()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            # Still building a model (a CPU backend's first conversion can outlast the wait): the thread
            # outlives this controller rather than be destroyed running, which would abort the process.
            # Its results go nowhere: the controller's connections die with it.
            thread = self._thread
            thread.setParent(None)
            _finishing_threads.add(thread)
            thread.finished.connect(lambda: _finishing_threads.discard(thread))

    # ----------------------------------------------------------------------------------- model loading
    def reload_model(self) -> None:
        """Build the active model again (the CPU inference settings changed); nothing when none is."""
        if self._last_requested is not None:
            self._load_active(self._last_requested)

    def _load_active(self, active: ActiveModel) -> None:
        """Build the registry's newly active model in the worker (queued behind any job in progress)."""
        self._last_requested = active
        self._loading.append(active)
        self.message.emit(f"Loading model {active.path}…")
        self._loadRequested.emit(self._predictor_factory(active.path), active.path)

    # ----------------------------------------------------------------------------------- worker signals
    def _on_model_loaded(self, model: LoadedModel) -> None:
        requested = self._loading.popleft()
        self.model = model
        self.model_version_id = self.registry.loaded(requested, model.info, model.sha256)
        self.message.emit(f"Model {model.info.name} ready on {model.runs_on or model.device}")
        self.modelChanged.emit(model)

    def _on_model_failed(self, error: str) -> None:
        self.registry.load_failed(self._loading.popleft())
        self.message.emit(f"Could not load the model: {error}")
        self.modelFailed.emit(error)

    def _on_job_started(self, job_id: int, _total: int) -> None:
        state = self._jobs.get(job_id)
        if state is not None:  # a queued job's ETA counts from when it really starts
            state.started = time.monotonic()

    def _on_result(self, job_id: int, result: ImageResult) -> None:
        state = self._jobs.get(job_id)
        if state is None:
            return
        try:
            outcome = self.document.apply_result(
                result,
                expected_revision=state.revisions[result.image_id],
                model_version_id=state.model_version_id,
            )
        except (StoreError, StaleImageError) as exc:  # e.g. another program held the file: not saved, said
            self.message.emit(f"The model's result for image {result.image_id} was not saved: {exc}")
            return
        if outcome.applied:
            state.applied += 1
        elif result.error is None:
            state.kept_edits += 1
            self.message.emit(f"{self.document.image(result.image_id).file_name}: {outcome.reason}")

    def _on_image_failed(self, job_id: int, image_id: int, error: str) -> None:
        self.message.emit(f"{self.document.image(image_id).file_name}: the model failed ({error})")

    def _on_progress(self, job_id: int, done: int, total: int) -> None:
        state = self._jobs.get(job_id)
        if state is None:
            return
        state.done = done
        eta = eta_seconds(done, total, time.monotonic() - state.started)
        self.progressChanged.emit(done, total, -1.0 if eta is None else eta)

    def _on_tile_progress(self, job_id: int, done: int, total: int) -> None:
        if job_id in self._jobs:
            self.tileProgressChanged.emit(done, total)

    def _on_job_finished(self, job_id: int, cancelled: bool, error: str) -> None:
        state = self._jobs.pop(job_id, None)
        if state is None:
            return
        if error:
            self.message.emit(f"Auto-segment did not run: {error}")
        else:
            verb = "Cancelled" if cancelled else "Finished"
            kept = f"; kept your edits on {state.kept_edits}" if state.kept_edits else ""
            self.message.emit(f"{verb}: {state.applied} image(s) segmented{kept}")
        if not self._jobs:
            self.busyChanged.emit(False)
        self.jobFinished.emit(job_id, cancelled)
