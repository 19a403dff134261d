"""A ``train`` request carried out: this process's device, the model the run starts from, the recipe, the
record, then the trainer.

Which model a run starts from is decided here, and only here:

- ``resume``: the run folder's last checkpoint (its architecture; its weights are restored by the trainer,
  with the optimizer and the RNG), which must have the training data's classes;
- ``weights``: that checkpoint's architecture and weights, with the training data's class set (classes it
  does not know start untrained; the caller is told which);
- neither: a new model of ``backbone`` with the request's head widths, anchor sizes and backbone weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data.coco import CocoData
from maskrcnn_core.engine.training import Callback, TrainConfig, TrainResult, train
from maskrcnn_core.model.factories import build_model
from maskrcnn_core.model.mask_rcnn import MaskRCNN
from maskrcnn_core.model.weights import load_weights_into, read_checkpoint
from maskrcnn_core.protocol import BACKBONES, LAST_CHECKPOINT, TrainRequest


class TrainSetupError(ValueError):
    """The request cannot start a run (no checkpoint to resume, classes that do not match, a flag that does
    not apply); the message says which, in one line."""


@dataclass(frozen=True)
class StartingModel:
    """The model a run starts from, where it came from (``parent``), and its classes that start untrained."""

    model: MaskRCNN
    parent: str | None
    untrained_classes: tuple[str, ...] = ()


def starting_model(request: TrainRequest, train_data: CocoData) -> StartingModel:
    """The model ``request`` starts from, on the CPU, for ``train_data``'s classes."""
    out = Path(request.out)
    classes = train_data.class_map
    sizes = {
        k: v for k, v in (("min_size", request.min_size), ("max_size", request.max_size)) if v is not None
    }
    # the layers a new model (or a new class set) starts from are drawn here, before the trainer seeds its
    # data order and augmentation: seed them too, so the same command gives the same model
    torch.manual_seed(request.seed)
    if request.resume:
        path = out / LAST_CHECKPOINT
        if not path.is_file():
            raise TrainSetupError(f"--resume: no {LAST_CHECKPOINT} in {out}")
        checkpoint = read_checkpoint(path)
        if tuple(checkpoint.class_map.names) != tuple(classes.names):
            raise TrainSetupError(
                f"--resume: {path} has classes {list(checkpoint.class_map.names)}, "
                f"the training data {list(classes.names)}"
            )
        if checkpoint.arch is None:
            raise TrainSetupError(f"--resume: {path} does not say which architecture it is for")
        parent = (checkpoint.metadata or {}).get("parent")
        return StartingModel(build_model(checkpoint.arch, class_map=classes), parent)
    if request.weights:
        checkpoint = read_checkpoint(request.weights)
        if checkpoint.arch is None:
            raise TrainSetupError(f"cannot tell which architecture {request.weights} is for")
        model = build_model(checkpoint.arch, class_map=classes, **sizes)
        untrained = load_weights_into(model, checkpoint)
        return StartingModel(model, str(request.weights), tuple(untrained))
    arch = {"name": BACKBONES[request.backbone], "kwargs": {}}
    return StartingModel(build_model(arch, class_map=classes, **sizes, **_new_model_options(request)), None)


def run_request(
    request: TrainRequest,
    train_data: CocoData,
    *,
    val_data: CocoData | None = None,
    device: torch.device | str = "cpu",
    callbacks: Sequence[Callback] = (),
    cancel: CancelToken | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainResult:
    """Build the starting model, move it to ``device`` and train it as ``request`` says.

    ``notify`` hears what the user should know before the run starts (classes that start untrained).
    Raises :class:`TrainSetupError` for a request that cannot start, and the trainer's errors.
    """
    start = starting_model(request, train_data)
    if start.untrained_classes and notify is not None:
        notify(f"classes new to {request.weights} (start untrained): {', '.join(start.untrained_classes)}")
    start.model.to(device)
    return train(
        start.model,
        train_data,
        request.out,
        TrainConfig.from_request(request),
        val_data=val_data,
        callbacks=callbacks,
        cancel=cancel,
        resume=request.resume,
        metadata=run_metadata(request, start.parent, train_data),
    )


def run_metadata(request: TrainRequest, parent: str | None, train_data: CocoData) -> dict[str, Any]:
    """What the run's checkpoints say about where they came from."""
    return {
        "name": request.name or Path(request.out).name,
        "parent": parent,
        "train_json": str(request.train_json),
        "images": str(request.images),
        "num_train_images": len(train_data.images),
    }


def _new_model_options(request: TrainRequest) -> dict[str, Any]:
    """The factory options of a new model: the request's widths, anchors and backbone weights."""
    options: dict[str, Any] = {
        k: v
        for k, v in (
            ("fpn_channels", request.fpn_channels),
            ("hidden_dim", request.hidden_dim),
            ("mask_hidden_channels", request.mask_hidden_channels),
        )
        if v is not None
    }
    if request.anchor_sizes:
        if request.backbone != "mobilenet_v2":
            raise TrainSetupError(
                "--anchor-sizes applies to --backbone mobilenet_v2 (ResNet-FPN uses 32..512)"
            )
        options["anchor_sizes"] = tuple(request.anchor_sizes)
    if not request.pretrained_backbone:
        options["backbone_weights"] = None
    return options
