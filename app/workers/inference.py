"""The inference worker: a QObject living in its own QThread that owns the predictor.

Threading model (see ``docs/adr/0004-threading-model.md``):

- The predictor is *built* inside the worker thread by a factory, so ``torch`` is imported there and never
  on the GUI thread. Tests pass a factory that returns a fake predictor giving real ``Prediction`` objects.
- Requests arrive as queued signals (``load``, ``run``); results leave as queued signals tagged with a
  job id. Masks are RLE-encoded here, so the GUI thread only stores a few short strings per image.
- :meth:`InferenceWorker.cancel` is the one method called from the GUI thread directly: it only sets a
  thread-safe flag that the running job (and the predictor, through its cancel token) checks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from app.project import inference_settings
from app.project.file_hash import file_sha256
from app.project.records import Detection, ImageResult, ImageUncertainty
from app.project.view_pyramid import PyramidRegions
from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.engine.tiling import TileOptions
from maskrcnn_core.image_io import ImageRegions
from maskrcnn_core.types import ClassMap, ModelInfo, Prediction

# The lowest score kept from the model: the score slider then re-filters without running it again.
STORED_SCORE_THRESHOLD = 0.05


class PredictorProtocol(Protocol):
    """What the app needs from ``maskrcnn_core.Predictor``."""

    model_info: ModelInfo
    device: str
    tiling: TileOptions | None  # tiled inference for large images; None: never tiled

    @property
    def description(self) -> str:
        """Where and how it runs, for the status bar: ``"CPU, OpenVINO fp32"``."""
        ...

    def predict(
        self,
        images: Sequence[str | os.PathLike[str] | np.ndarray | ImageRegions],
        *,
        score_thresh: float = 0.05,
        cancel: CancelToken | None = None,
        progress: Callable[[int, int], None] | None = None,
        tile_progress: Callable[[int, int], None] | None = None,
    ) -> list[Prediction]: ...


PredictorFactory = Callable[[], PredictorProtocol]


def checkpoint_factory(weights: str | os.PathLike[str], device: str | None = None) -> PredictorFactory:
    """A factory for the real predictor; torch is imported when it is called, in the worker thread, with
    this computer's CPU inference settings as they are then."""

    def build() -> PredictorProtocol:
        from maskrcnn_core.engine.predictor import Predictor

        settings = inference_settings.load()
        return Predictor(
            weights,
            device=device,
            backend=settings.cpu_backend,
            allow_reduced_precision=settings.allow_reduced_precision,
        )

    return build


@dataclass(frozen=True)
class LoadedModel:
    """The model the worker holds: what it is, where it runs, and its file's SHA-256 (``None`` if no file);
    ``runs_on`` says where and how in words ("CPU, OpenVINO fp32")."""

    info: ModelInfo
    device: str
    sha256: str | None
    runs_on: str = ""


@dataclass(frozen=True)
class BoxJob:
    """Segment the object in ``box`` (xyxy, image pixels) of one image: the box-prompt tool.

    ``label`` is the model label (``1..K``) whose mask head to use, or ``None`` for the model's best class.
    """

    id: int
    image_id: int
    path: str
    box: tuple[float, float, float, float]
    label: int | None = None
    project_dir: Path | None = None  # where a large image's view pyramid may be read instead of its file


@dataclass(frozen=True)
class Job:
    """Segment ``items`` (``(image id, path)`` pairs) in order, ``batch_size`` images per model call,
    large images in tiles as ``tiling`` says (the project's setting; ``None``: the predictor's own)."""

    id: int
    items: tuple[tuple[int, str], ...]
    batch_size: int = 1
    tiling: TileOptions | None = None
    project_dir: Path | None = None  # where a large image's view pyramid may be read instead of its file


class InferenceWorker(QObject):
    """Lives in a QThread; see the module docstring. All signals carry the job id they belong to."""

    modelLoaded = Signal(object)  # LoadedModel
    modelFailed = Signal(str)
    jobStarted = Signal(int, int)  # job id, number of images
    resultReady = Signal(int, object)  # job id, ImageResult
    imageFailed = Signal(int, int, str)  # job id, image id, message: the model failed, not the file
    progress = Signal(int, int, int)  # job id, images segmented, total
    tileProgress = Signal(int, int, int)  # job id, tiles of the large image in progress done, its tiles
    jobFinished = Signal(int, bool, str)  # job id, cancelled, error message ("" when none)
    boxReady = Signal(int, object)  # box job id, ImageResult (one detection, or none, or an error)

    def __init__(self) -> None:
        super().__init__()
        self._predictor: PredictorProtocol | None = None
        self._lock = threading.Lock()
        self._cancelled_jobs: set[int] = set()
        self._flags: dict[int, CancelToken] = {}

    @Slot(object, str)
    def load(self, factory: PredictorFactory, path: str = "") -> None:
        """Build the predictor (in this thread) and announce it, or say why it failed. ``path`` is the
        checkpoint file it is built from (its SHA-256 names the version), else the model's own."""
        try:
            predictor = factory()
            checkpoint = path or predictor.model_info.path
            digest = file_sha256(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
        except Exception as exc:  # noqa: BLE001 - any failure becomes a message; the window must live on
            self.modelFailed.emit(f"{type(exc).__name__}: {exc}")
            return
        self._predictor = predictor
        self.modelLoaded.emit(
            LoadedModel(predictor.model_info, str(predictor.device), digest, predictor.description)
        )

    def cancel(self, job_id: int) -> None:
        """Ask job ``job_id`` to stop (safe to call from any thread; it may not have started yet)."""
        with self._lock:
            self._cancelled_jobs.add(job_id)
            flag = self._flags.get(job_id)
        if flag is not None:
            flag.cancel()

    @Slot(object)
    def run(self, job: Job) -> None:
        """Segment the job's images, emitting one ``resultReady`` per image as soon as it is segmented."""
        flag = CancelToken()
        with self._lock:
            self._flags[job.id] = flag
            if job.id in self._cancelled_jobs:
                flag.cancel()
        total = len(job.items)
        self.jobStarted.emit(job.id, total)
        try:
            if self._predictor is None:
                self.jobFinished.emit(job.id, False, "no model is loaded")
                return
            done = 0
            for start in range(0, total, max(1, job.batch_size)):
                if flag.cancelled:
                    break
                chunk = job.items[start : start + max(1, job.batch_size)]
                if job.tiling is not None:
                    self._predictor.tiling = job.tiling
                self._run_chunk(job.id, chunk, flag, job.project_dir)
                done += len(chunk)
                self.progress.emit(job.id, min(done, total), total)
            self.jobFinished.emit(job.id, flag.cancelled, "")
        finally:
            with self._lock:
                self._flags.pop(job.id, None)
                self._cancelled_jobs.discard(job.id)

    @Slot(object)
    def segment_box(self, job: BoxJob) -> None:
        """The model's mask for one drawn box (``Predictor.segment_boxes``: the mask head on that RoI)."""
        predictor = self._predictor
        try:
            if predictor is None or not hasattr(predictor, "segment_boxes"):
                raise RuntimeError("the loaded model cannot segment a drawn box" if predictor else "no model")
            labels = None if job.label is None else np.array([job.label], dtype=np.int64)
            source = image_source(job.path, job.project_dir)
            prediction = predictor.segment_boxes(source, np.array([job.box], dtype=np.float32), labels)
            result = to_image_result(job.image_id, prediction, predictor.model_info.class_map)
        except Exception as exc:  # noqa: BLE001 - reported to the user; the worker lives on
            result = ImageResult(job.image_id, (0, 0), (), f"{type(exc).__name__}: {exc}")
        self.boxReady.emit(job.id, result)

    def _run_chunk(
        self, job_id: int, chunk: Sequence[tuple[int, str]], flag: CancelToken, project_dir: Path | None
    ) -> None:
        assert self._predictor is not None
        try:
            predictions = self._predictor.predict(
                [image_source(path, project_dir) for _, path in chunk],
                score_thresh=STORED_SCORE_THRESHOLD,
                cancel=flag,
                tile_progress=lambda done, total: self.tileProgress.emit(job_id, done, total),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report it and go on with the next image
            for image_id, _ in chunk:
                self.imageFailed.emit(job_id, image_id, f"{type(exc).__name__}: {exc}")
            return
        if flag.cancelled and len(predictions) < len(chunk):
            return  # the predictor stopped early: what it did not finish is simply not reported
        class_map = self._predictor.model_info.class_map
        # Not strict: a cancelled predictor returns the images it finished, and only those are reported.
        for (image_id, _), prediction in zip(chunk, predictions, strict=False):
            try:
                result = to_image_result(image_id, prediction, class_map)
            except Exception as exc:  # noqa: BLE001 - one bad output must not end the whole run
                self.imageFailed.emit(job_id, image_id, f"{type(exc).__name__}: {exc}")
                continue
            self.resultReady.emit(job_id, result)


def image_source(path: str, project_dir: Path | None) -> str | ImageRegions:
    """What the model reads for the image at ``path``: its view pyramid's tiles when it is a large image
    whose file cannot be read a region at a time and whose pyramid is built (a 400-megapixel JPEG is then
    never decoded whole in the window's process), else the file."""
    if project_dir is None:
        return path
    try:
        regions = PyramidRegions.find(project_dir, Path(path))
    except OSError:
        return path
    return path if regions is None else regions


def to_image_result(image_id: int, prediction: Prediction, class_map: ClassMap) -> ImageResult:
    """Encode a ``Prediction`` for the store: RLE masks, category names; empty masks are dropped."""
    from maskrcnn_core.masks import mask_to_rle

    if prediction.error is not None:
        return ImageResult(image_id, prediction.image_size, (), prediction.error)
    detections = []
    scored = prediction.uncertainty
    instance_uncertainty = [None] * len(prediction) if scored is None else scored.instance.tolist()
    for box, score, category_id, mask, uncertainty in zip(
        prediction.boxes.tolist(),
        prediction.scores.tolist(),
        prediction.category_ids.tolist(),
        prediction.masks,
        instance_uncertainty,
        strict=True,
    ):
        area = mask.area
        if area == 0:
            continue
        rle = mask_to_rle(mask)
        detections.append(
            Detection(
                category_name=class_map.category_id_to_name(category_id),
                rle={"size": [int(v) for v in rle["size"]], "counts": rle["counts"]},
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                area=area,
                score=float(score),
                uncertainty=uncertainty,
            )
        )
    height, width = prediction.image_size
    image = None if scored is None else ImageUncertainty(scored.image, scored.reason(), scored.features)
    return ImageResult(image_id, (int(height), int(width)), tuple(detections), uncertainty=image)
