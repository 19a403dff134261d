"""`Predictor`: load a checkpoint once, segment many images; what the app and the CLI use.

It takes numpy images or file paths, batches them, runs on CUDA when there is one (mixed precision and
channels-last there) and on the CPU through OpenVINO when it is installed (the execution backend, chosen
by :func:`maskrcnn_core.inference_options.choose_backend`), and returns plain
:class:`~maskrcnn_core.types.Prediction` objects whose masks are cropped to their boxes — never a
full-image tensor per instance. A file that cannot be read gives an error result for that image; the rest
of the batch goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.engine.allocator import reuse_freed_memory
from maskrcnn_core.engine.postprocess import paste_masks_cropped
from maskrcnn_core.engine.tiled_predict import (
    DetectArrays,
    TiledImage,
    open_image_regions,
    open_tiled,
    run_tiled,
)
from maskrcnn_core.engine.tiling import TileOptions, box_region, place_in_image
from maskrcnn_core.engine.uncertainty import score_detections
from maskrcnn_core.image_io import ImageReadError, ImageRegions, read_image, to_rgb_uint8
from maskrcnn_core.inference_options import BackendChoice, choose_backend
from maskrcnn_core.model.mask_rcnn import MaskRCNN
from maskrcnn_core.model.subnetworks import SubNetworks
from maskrcnn_core.model.weights import load_model, model_info
from maskrcnn_core.types import ModelInfo, Prediction

if TYPE_CHECKING:
    from maskrcnn_core.engine.openvino_backend import OpenVinoSubNetworks

log = logging.getLogger(__name__)

#: an image file, an array, or an image read a region at a time (its owner closes it)
ImageSource = str | os.PathLike | np.ndarray | ImageRegions
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class _Loaded:
    index: int
    source: str | None
    image: np.ndarray  # (H, W, 3) uint8


class Predictor:
    """A model loaded for inference.

    Args:
        weights: a checkpoint file (ours or torchvision's) or ``"coco"`` / ``"coco-v2"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default CUDA when available.
        batch_size: images per forward pass.
        mixed_precision: autocast on CUDA (bfloat16 where supported, else float16); ignored on CPU.
        max_pixels: larger images are refused with an error result (decompression-bomb guard).
        reuse_memory: on CPU, have the process keep freed memory for reuse
            (:func:`maskrcnn_core.engine.allocator.reuse_freed_memory`, process-wide): 20-25 % faster on large
            photos, at the cost of holding the largest inference's memory until exit.
        backend: ``"auto"`` (OpenVINO on a CPU when installed), ``"torch"`` or ``"openvino"``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (the CPU backend's; see
            :mod:`maskrcnn_core.inference_options` for the rule).
        allow_reduced_precision: let ``precision="auto"`` pick bfloat16 where the CPU has it natively.
        cache_dir: where the CPU backend keeps converted networks (default: the user's cache folder).
        tiling: tiled inference for large images (:class:`~maskrcnn_core.engine.tiling.TileOptions`;
            ``None``: none). Also the attribute :attr:`tiling`, which may be changed between calls. An image
            read in tiles may have up to ``maskrcnn_core.image_io.TILED_MAX_PIXELS`` (1 gigapixel) whatever
            ``max_pixels`` says: a tiled TIFF is never decoded whole.

    A backend that cannot run (not installed, a network that does not convert) falls back to torch with
    one warning in the log; :attr:`backend` says what runs and why.
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 2,
        mixed_precision: bool = True,
        max_pixels: int | None = 100_000_000,
        reuse_memory: bool = True,
        backend: str = "auto",
        precision: str = "auto",
        allow_reduced_precision: bool = False,
        cache_dir: str | os.PathLike | None = None,
        tiling: TileOptions | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else _default_device()
        choice = choose_backend(
            backend, precision, on_gpu=device.type == "cuda", allow_reduced_precision=allow_reduced_precision
        )
        model = load_model(weights, device=device)
        if device.type == "cuda":
            # NHWC convolutions for tensor cores. Not on CPU: there it was 15-20 % faster (oneDNN), but its
            # other rounding reordered near-tied detections against torchvision's pipeline. Only for a model
            # of our own: from_model must not change the layout of a model that is being trained.
            model = model.to(memory_format=torch.channels_last)
        elif reuse_memory:
            reuse_freed_memory()
        self._setup(model, device, batch_size, mixed_precision, max_pixels, weights)
        self._use_backend(choice, cache_dir, source=weights)
        self.tiling = tiling

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        *,
        batch_size: int = 2,
        mixed_precision: bool = True,
        max_pixels: int | None = 100_000_000,
        backend: str = "torch",
        precision: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        subnetworks: SubNetworks | None = None,
    ) -> Predictor:
        """A Predictor around a model already in memory (training's evaluation); it stays on its device.

        The backend defaults to torch here: a model being trained changes between evaluations, and each
        change would be a new conversion. ``subnetworks`` replaces what runs the dense networks (the
        trainer's for a frozen backbone, whose features it keeps between evaluations)."""
        predictor = cls.__new__(cls)
        device = next(model.parameters()).device
        predictor._setup(model, device, batch_size, mixed_precision, max_pixels, None)
        predictor._use_backend(choose_backend(backend, precision, on_gpu=device.type == "cuda"), cache_dir)
        if subnetworks is not None:
            predictor._subnetworks = subnetworks
        return predictor

    def _setup(self, model, device, batch_size, mixed_precision, max_pixels, weights) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device
        self._model = model
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self._autocast_dtype: torch.dtype | None = None
        if self.device.type == "cuda" and mixed_precision:
            self._autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.model_info: ModelInfo = model_info(self._model, weights)
        self._class_map = self._model.class_map
        self._subnetworks: SubNetworks | None = None  # None: the model's own torch modules
        # the CPU backend's networks while they hold the only copy of the weights (see `model`)
        self._weights_holder: OpenVinoSubNetworks | None = None
        self.backend = BackendChoice("torch", "mixed" if self._autocast_dtype is not None else "fp32")
        # tiled inference for large images (``None``: never tiled); see maskrcnn_core.engine.tiling
        self.tiling = None

    def _use_backend(
        self,
        choice: BackendChoice,
        cache_dir: str | os.PathLike | None,
        source: str | os.PathLike | None = None,
    ) -> None:
        if self.device.type == "cuda":
            choice = BackendChoice("torch", self.backend.precision, choice.reason)
        elif choice.backend == "openvino":
            from maskrcnn_core.engine.openvino_backend import ConversionError, OpenVinoSubNetworks

            try:
                networks = OpenVinoSubNetworks(
                    self._model, precision=choice.precision, cache_dir=cache_dir, source=source
                )
            except ConversionError as exc:
                choice = BackendChoice("torch", "fp32", f"{exc}: running on torch")
            else:
                self._subnetworks = networks
                if source is not None:
                    # a model of our own, from a file: torch's copy of the weights is not needed to detect,
                    # and `model` reads it back when asked. from_model's model is its caller's (training),
                    # and keeps its weights.
                    networks.drop_torch_weights()
                    self._weights_holder = networks
        if choice.reason:
            log.warning("%s", choice.reason)
        self.backend = choice

    @property
    def model(self) -> MaskRCNN:
        """The model, able to run in torch. Where the CPU backend runs a model loaded from a file, torch's
        copy of its weights is dropped (its peak memory is then not above the torch backend's), and the first
        access here reads it back from that file.

        Raises:
            CheckpointError: the file no longer holds those weights; the Predictor keeps working.
        """
        if self._weights_holder is not None:
            self._weights_holder.restore_torch_weights()
            self._weights_holder = None
        return self._model

    @property
    def device_name(self) -> str:
        """What the status bar shows: ``"CPU"`` or the GPU's name."""
        if self.device.type == "cuda":
            return f"GPU ({torch.cuda.get_device_name(self.device)})"
        return "CPU"

    @property
    def description(self) -> str:
        """Device and backend in a few words, for the status bar: ``"CPU, OpenVINO fp32"``."""
        return f"{self.device_name}, {self.backend.label}"

    def predict(
        self,
        images: Sequence[ImageSource],
        *,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        top_k: int = 100,
        cancel: CancelToken | None = None,
        progress: ProgressCallback | None = None,
        tile_progress: ProgressCallback | None = None,
    ) -> list[Prediction]:
        """One :class:`Prediction` per image, in order.

        ``images``: file paths (EXIF orientation applied; grayscale, RGBA, 16-bit converted) or numpy
        arrays ``(H, W)``, ``(H, W, 3)``, ``(H, W, 4)`` of uint8/uint16/float in [0, 1]. An unreadable file
        gives ``Prediction.failed`` for that image. ``progress(done, total)`` is called after each batch, and
        ``tile_progress(tiles done, tiles)`` after each batch of a tiled image's tiles;
        when ``cancel`` is set the call returns early with the predictions made so far (fewer than images).
        """
        if isinstance(images, str | os.PathLike | np.ndarray):
            raise ValueError("images must be a sequence of paths or arrays; wrap a single image in a list")
        total = len(images)
        results: list[Prediction | None] = [None] * total
        done = 0
        for start in range(0, total, self.batch_size):
            if cancel is not None and cancel.cancelled:
                break
            batch: list[_Loaded] = []
            for index in range(start, min(start + self.batch_size, total)):
                loaded = self._load(index, images[index])
                if isinstance(loaded, Prediction):
                    results[index] = loaded
                elif isinstance(loaded, TiledImage):
                    detect = self._detect_arrays(score_thresh, nms_thresh, top_k)
                    results[index] = run_tiled(loaded, self.batch_size, detect, cancel, tile_progress)
                else:
                    batch.append(loaded)
            if cancel is not None and cancel.cancelled:
                break  # a tiled image stopped part way: it has no prediction
            # one forward per image size: the model pads a batch to its largest height and width, and a
            # portrait photo beside a landscape one would nearly double the work
            runs = [
                (item, prediction)
                for group in _by_size(batch)
                for item, prediction in zip(
                    group, self._run(group, score_thresh, nms_thresh, top_k), strict=False
                )
            ]
            for item, prediction in runs:
                results[item.index] = prediction
            done = min(start + self.batch_size, total)
            if progress is not None:
                progress(done, total)
        return [r for r in results[:done] if r is not None]

    def segment_boxes(
        self, image: ImageSource, boxes: np.ndarray, labels: np.ndarray | None = None
    ) -> Prediction:
        """Masks for boxes a user drew: ``boxes`` ``(N, 4)`` xyxy in image pixels; ``labels`` ``(N,)`` in
        ``1..num_classes`` or ``None`` to take the model's best class. ``scores`` are the classifier's
        probability of each label."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not np.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
            raise ValueError("boxes must be finite xyxy boxes with x1 < x2 and y1 < y2")
        transform = self._model.transform
        tiled = open_tiled(
            0, image, self.tiling or TileOptions(), (transform.min_size[-1], transform.max_size)
        )
        if isinstance(tiled, Prediction):
            return tiled
        if tiled is not None:
            # a large image: the region around the boxes, at its own scale as a tile would be
            return self._segment_boxes_in_region(tiled, boxes, labels)
        loaded = self._load(0, image, may_tile=False)
        if isinstance(loaded, Prediction):
            return loaded
        assert isinstance(loaded, _Loaded)
        return self._segment_boxes_loaded(loaded, boxes, labels)

    def _segment_boxes_loaded(
        self, loaded: _Loaded, boxes: np.ndarray, labels: np.ndarray | None
    ) -> Prediction:
        tensor = self._to_tensor(loaded.image).float().div_(255.0)  # forward takes float images
        box_tensor = torch.from_numpy(boxes).to(self.device)
        label_tensor = (
            None if labels is None else torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        )
        with self._autocast():
            out = self._model.segment_boxes(tensor, box_tensor, label_tensor, subnetworks=self._subnetworks)
        size = loaded.image.shape[:2]
        masks = paste_masks_cropped(out["mask_probs"], box_tensor, size)
        return self._prediction(loaded.source, size, box_tensor, out["scores"], out["labels"], masks)

    # ------------------------------------------------------------------ internals

    def _segment_boxes_in_region(
        self, image: TiledImage, boxes: np.ndarray, labels: np.ndarray | None
    ) -> Prediction:
        try:
            regions = open_image_regions(image)
            with nullcontext(regions) if regions is image.regions else regions:
                size = regions.size
                region = box_region(boxes, size, image.options)
                pixels = np.array(regions.read(region.x0, region.y0, region.x1, region.y1))
        except ImageReadError as exc:
            return Prediction.failed(image.source, str(exc))
        shift = np.array([region.x0, region.y0, region.x0, region.y0], dtype=np.float32)
        limits = np.array([region.width, region.height, region.width, region.height], dtype=np.float32)
        inside = np.clip(boxes - shift, 0, limits)
        with self._model.transform.native_scale():
            prediction = self._segment_boxes_loaded(_Loaded(0, None, pixels), inside, labels)
        return dataclasses.replace(place_in_image(prediction, region, size), source=image.source)

    def _load(
        self, index: int, source: ImageSource, *, may_tile: bool = True
    ) -> _Loaded | TiledImage | Prediction:
        if may_tile and self.tiling is not None and self.tiling.mode != "off":
            transform = self._model.transform  # inference resizes to its last min_size
            tiled = open_tiled(index, source, self.tiling, (transform.min_size[-1], transform.max_size))
            if tiled is not None:  # tiled, or too large even for tiles
                return tiled
        if isinstance(source, np.ndarray):
            return _Loaded(index, None, to_rgb_uint8(source))
        if isinstance(source, ImageRegions):
            height, width = source.size
            try:
                return _Loaded(index, source.path, np.array(source.read(0, 0, width, height)))
            except ImageReadError as exc:
                return Prediction.failed(source.path, str(exc))
        name = os.fspath(source)
        try:
            return _Loaded(index, name, read_image(name, max_pixels=self.max_pixels))
        except ValueError as exc:  # ImageReadError: missing, corrupt, unsupported, too large
            return Prediction.failed(name, str(exc))

    def _detect_arrays(self, score_thresh: float, nms_thresh: float, top_k: int) -> DetectArrays:
        """How tiled inference runs its tiles (``native_scale``: at their own size, no resize) and its
        full-image pass (resized as usual)."""

        def detect(images: list[np.ndarray], native_scale: bool) -> list[Prediction]:
            batch = [_Loaded(i, None, image) for i, image in enumerate(images)]
            with self._model.transform.native_scale() if native_scale else nullcontext():
                return self._run(batch, score_thresh, nms_thresh, top_k)

        return detect

    def _run(
        self, batch: list[_Loaded], score_thresh: float, nms_thresh: float, top_k: int
    ) -> list[Prediction]:
        if not batch:
            return []
        try:
            with self._autocast(), self._preprocessing():
                detections = self._model.detect(
                    [self._to_tensor(item.image) for item in batch],
                    score_thresh=score_thresh,
                    nms_thresh=nms_thresh,
                    top_k=top_k,
                    subnetworks=self._subnetworks,
                )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(batch) > 1:  # retry one image at a time before giving up
                return [p for item in batch for p in self._run([item], score_thresh, nms_thresh, top_k)]
            h, w = batch[0].image.shape[:2]
            return [
                Prediction.failed(
                    batch[0].source,
                    f"out of GPU memory on a {w}x{h} image; use a smaller input size (max_size) or the CPU",
                )
            ]
        results = []
        for item, det in zip(batch, detections, strict=False):
            masks = paste_masks_cropped(det["mask_probs"], det["boxes"], det["image_size"])
            uncertainty = score_detections(
                det["mask_probs"], det["class_probs"], det["scores"], det["pooled_features"]
            )
            results.append(
                self._prediction(
                    item.source,
                    det["image_size"],
                    det["boxes"],
                    det["scores"],
                    det["labels"],
                    masks,
                    uncertainty,
                )
            )
        return results

    def _prediction(self, source, size, boxes, scores, labels, masks, uncertainty=None) -> Prediction:
        labels_np = labels.cpu().numpy().astype(np.int64)
        return Prediction(
            image_size=(int(size[0]), int(size[1])),
            boxes=boxes.float().cpu().numpy(),
            scores=scores.float().cpu().numpy(),
            labels=labels_np,
            category_ids=self._class_map.labels_to_category_ids(labels_np),
            masks=tuple(masks),
            source=source,
            uncertainty=uncertainty,
        )

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, H, W) uint8 on the device: 4x less to copy than float, and the model
        normalises uint8 in one pass (see ``ImageTransform``)."""
        if not image.flags.writeable or not image.flags.c_contiguous:
            image = np.array(image, order="C")  # torch shares memory and must be allowed to
        tensor = torch.from_numpy(image).to(self.device, non_blocking=True)
        return tensor.permute(2, 0, 1)

    def _preprocessing(self):
        """The compiled CPU backend's results already differ from torchvision's arithmetic (within 1e-4),
        so its images are normalised and resized a channel at a time, for a third of the full-size float
        copy (see ``ImageTransform.channel_at_a_time``); torch's stay bit for bit torchvision's."""
        if self.backend.backend != "openvino":
            return nullcontext()
        return self._model.transform.channel_at_a_time()

    def _autocast(self):
        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._autocast_dtype)


def _by_size(batch: list[_Loaded]) -> list[list[_Loaded]]:
    """The batch's images grouped by their size, in their order of first appearance."""
    groups: dict[tuple[int, ...], list[_Loaded]] = {}
    for item in batch:
        groups.setdefault(item.image.shape, []).append(item)
    return list(groups.values())


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
