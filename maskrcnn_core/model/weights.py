"""Checkpoint formats: torchvision's COCO files and state dicts, and our own self-describing checkpoints.

Our checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``; a file that carries
code is refused)::

    {"format": "maskrcnn-studio-checkpoint", "format_version": 1,
     "arch": {"name": "resnet50_fpn", "kwargs": {...}},   # rebuilds the model, see model.factories
     "class_names": [...], "category_ids": [...],          # the ClassMap: label i -> [i-1] of each
     "state_dict": {...}, "metadata": {...},               # metadata: training data, metrics, parent, ...
     "training_state": {...}}                              # optional: optimizer, scheduler, RNG, iteration
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn_core import downloads
from maskrcnn_core.atomic import atomic_write
from maskrcnn_core.model.mask_rcnn import MaskRCNN
from maskrcnn_core.paths import unreadable_reason
from maskrcnn_core.types import ClassMap, ModelInfo

FORMAT = "maskrcnn-studio-checkpoint"
FORMAT_VERSION = 1

#: parameters whose rows belong to individual classes; re-mapped or re-initialised for a new class set
CLASS_SPECIFIC_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class Checkpoint:
    """A checkpoint read into memory, whatever its format."""

    source: str
    kind: str  # "studio" or "torchvision"
    state_dict: dict[str, Tensor]
    arch: dict | None
    class_map: ClassMap
    metadata: dict = field(default_factory=dict)
    training_state: dict | None = None
    #: torchvision's v1 COCO file was trained with FrozenBatchNorm eps 0
    frozen_bn_eps: float | None = None

    def check_arch(self, name: str) -> None:
        if self.arch is not None and self.arch.get("name") != name:
            raise CheckpointError(
                f"{self.source} holds a {self.arch.get('name')} model; "
                f"it cannot be loaded into a {name} model"
            )


def hub_checkpoint_path(alias: str) -> Path:
    """Where torch hub keeps torchvision's COCO file for ``"coco"`` / ``"coco-v2"``."""
    return downloads.cached_path(downloads.entry(alias))


def read_checkpoint(weights: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file (ours or torchvision's) or a COCO alias (``"coco"``, ``"coco-v2"``)."""
    source = os.fspath(weights)
    if source in downloads.CATALOGUE:
        path = _fetch_coco(source)
    else:
        path = Path(source)
        reason = unreadable_reason(path)
        if reason == "no such file":
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if reason is not None:
            raise CheckpointError(f"checkpoint {path}: {reason}")
        if not _looks_like_torch_file(path):
            raise CheckpointError(
                f"{path} is not a checkpoint: torch.save files are zip archives or pickles, this is neither"
            )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it contains Python objects beyond tensors and plain data "
            f"(code could run on load). Re-save its state_dict. ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, RecursionError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is damaged or truncated ({reason})"
        ) from None
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        return _read_studio(raw, str(path))
    if isinstance(raw, dict) and raw and all(isinstance(v, Tensor) for v in raw.values()):
        return _read_torchvision(raw, str(path))
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        # torchvision's reference training scripts save {"model": state_dict, "optimizer": ...}
        return _read_torchvision(raw["model"], str(path))
    raise CheckpointError(f"{path} is neither a Mask R-CNN Studio checkpoint nor a torchvision state dict")


def load_weights_into(model: MaskRCNN, checkpoint: Checkpoint) -> list[str]:
    """Load ``checkpoint`` into ``model``; return the class names that start untrained.

    Backbone, FPN, RPN and the class-independent head layers must fit exactly. The class-specific rows
    (classifier, box regressor, mask logits) are copied for classes whose names both sides share and
    re-initialised for new ones, so fine-tuning on a new class set keeps what it can.
    """
    config = model.config
    state = OrderedDict(checkpoint.state_dict)
    metadata = getattr(checkpoint.state_dict, "_metadata", None)
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]  # torchvision's old key layouts need it
    same_classes = config.class_map.names == checkpoint.class_map.names
    new_classes: list[str] = []
    if not same_classes:
        class_state = {k: state.pop(k) for k in list(state) if k.startswith(CLASS_SPECIFIC_PREFIXES)}
        new_classes = _copy_shared_class_rows(model, class_state, checkpoint.class_map)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{checkpoint.source} does not fit this {_arch_name(model)} model: {_first_lines(exc)}"
        ) from None
    missing = [k for k in result.missing_keys if same_classes or not k.startswith(CLASS_SPECIFIC_PREFIXES)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{checkpoint.source} does not fit this {_arch_name(model)} model: "
            f"{len(missing)} missing keys {missing[:4]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:4]}"
        )
    if checkpoint.frozen_bn_eps is not None:
        from torchvision.ops import FrozenBatchNorm2d

        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = checkpoint.frozen_bn_eps
    return new_classes


def load_model(weights: str | os.PathLike, *, device: str | torch.device = "cpu") -> MaskRCNN:
    """The model a checkpoint describes, with its weights, classes and ``checkpoint_metadata``, in eval
    mode on ``device``."""
    from maskrcnn_core.model.factories import build_model

    checkpoint = read_checkpoint(weights)
    arch = checkpoint.arch
    if arch is None:
        raise CheckpointError(f"{checkpoint.source}: cannot tell which architecture this state dict is for")
    # Built on the meta device, then given uninitialised memory that the checkpoint fills: the random
    # initialisation it would overwrite was 0.5-0.7 s of a ResNet-50 load, holding the GIL in pieces.
    with torch.device("meta"):
        model = build_model(arch, class_map=checkpoint.class_map)
    model.to_empty(device="cpu")
    not_in_checkpoint = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    if not_in_checkpoint:  # pragma: no cover - a module with non-persistent buffers: initialise for real
        model = build_model(arch, class_map=checkpoint.class_map)
    load_weights_into(model, checkpoint)  # raises unless every parameter and buffer is in the checkpoint
    model.checkpoint_metadata = dict(checkpoint.metadata)
    return model.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike,
    model: MaskRCNN,
    *,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write our checkpoint atomically (temp file, fsync, rename): a crash leaves the old file intact.

    ``half`` stores floating-point weights as float16 (half the size; loading casts them back).
    """
    config = model.config
    if not config.arch:
        raise CheckpointError(
            "this model has a custom backbone, which a checkpoint cannot rebuild; "
            "save model.state_dict() with torch.save instead"
        )
    state = model.state_dict()
    if half:
        state = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in state.items())
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": config.arch,
        **config.class_map.to_dict(),
        "state_dict": OrderedDict((k, v.detach().cpu()) for k, v in state.items()),
        "metadata": dict(metadata or {}),
    }
    if training_state is not None:
        payload["training_state"] = training_state
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (see :func:`maskrcnn_core.atomic.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def model_info(model: MaskRCNN, path: str | os.PathLike | None = None) -> ModelInfo:
    """The plain description of a model that the app shows and stores."""
    metadata = dict(model.checkpoint_metadata)
    name = metadata.get("name") or (Path(path).stem if path is not None else _arch_name(model))
    return ModelInfo(
        name=str(name),
        arch=_arch_name(model),
        class_map=model.class_map,
        path=os.fspath(path) if path is not None else None,
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------


def _looks_like_torch_file(path: Path) -> bool:
    """``torch.save`` writes a zip archive (``PK``) or, in the legacy format, a pickle (protocol 2+: 0x80).

    Checked before ``torch.load``, whose safe loader reports any other bytes as a forbidden Python object.
    """
    with open(path, "rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def _fetch_coco(alias: str) -> Path:
    """The cached file of a catalogue alias, downloaded first when it is not there yet."""
    try:
        return downloads.download(downloads.entry(alias))
    except downloads.DownloadError as exc:
        raise FileNotFoundError(f"torchvision's COCO weights '{alias}' are not available: {exc}") from None


def _read_studio(raw: dict, source: str) -> Checkpoint:
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format version {version}; this build reads {FORMAT_VERSION}"
        )
    for key in ("arch", "class_names", "category_ids", "state_dict"):
        if key not in raw:
            raise CheckpointError(f"{source} is missing '{key}'")
    try:
        # files written before class names had to be unique may repeat one (COCO's "N/A")
        class_map = ClassMap.telling_apart_repeated_names(raw["class_names"], raw["category_ids"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{source} has an invalid class list: {exc}") from None
    return Checkpoint(
        source=source,
        kind="studio",
        state_dict=raw["state_dict"],
        arch=raw["arch"],
        class_map=class_map,
        metadata=dict(raw.get("metadata") or {}),
        training_state=raw.get("training_state"),
    )


def _read_torchvision(state: dict[str, Tensor], source: str) -> Checkpoint:
    from maskrcnn_core.model.factories import COCO_CLASS_MAP

    cls_key = "roi_heads.box_predictor.cls_score.weight"
    if cls_key not in state:
        raise CheckpointError(f"{source} is not a Mask R-CNN state dict (no {cls_key})")
    num_classes = int(state[cls_key].shape[0]) - 1
    if num_classes < 1:
        raise CheckpointError(f"{source} has a classifier for background only ({cls_key})")
    # a state dict names no classes: COCO's when it has as many, else class_1..class_K
    class_map = COCO_CLASS_MAP if num_classes == len(COCO_CLASS_MAP) else ClassMap.numbered(num_classes)
    arch = _infer_torchvision_arch(state)
    legacy_v1 = Path(source).name.startswith("maskrcnn_resnet50_fpn_coco-")
    return Checkpoint(
        source=source,
        kind="torchvision",
        state_dict=state,
        arch=arch,
        class_map=class_map,
        frozen_bn_eps=0.0 if legacy_v1 else None,
    )


def _infer_torchvision_arch(state: dict[str, Tensor]) -> dict | None:
    blocks = {k.split(".")[3] for k in state if k.startswith("backbone.body.layer3.")}
    bottleneck = any(k.startswith("backbone.body.layer1.0.conv3.") for k in state)
    depth = {(True, 6): 50, (True, 23): 101, (False, 2): 18, (False, 6): 34}.get((bottleneck, len(blocks)))
    if depth is None:
        return None
    v2 = "roi_heads.box_head.0.0.weight" in state or "rpn.head.conv.1.0.weight" in state
    name = f"resnet{depth}_fpn" + ("_v2" if v2 else "")
    mask_channels = state.get("roi_heads.mask_predictor.mask_fcn_logits.weight")
    kwargs: dict[str, Any] = {"norm": "batch" if v2 else "frozen", "trainable_backbone_layers": 3}
    if mask_channels is not None and mask_channels.shape[0] == 1:
        kwargs["class_agnostic_masks"] = True
    return {"name": name, "kwargs": kwargs}


def _copy_shared_class_rows(
    model: MaskRCNN, class_state: dict[str, Tensor], checkpoint_classes: ClassMap
) -> list[str]:
    """Copy the checkpoint's rows for the classes both sides name (and background) into ``model``."""
    ours = model.class_map
    # (new label, old label) pairs, background first
    pairs = [(0, 0)] + [
        (ours.name_to_label(name), checkpoint_classes.name_to_label(name))
        for name in ours.names
        if checkpoint_classes.has_name(name)
    ]
    own = model.state_dict()
    with torch.no_grad():
        for key, old in class_state.items():
            if key not in own:
                continue
            target = own[key]
            rows_per_class = 4 if key.startswith("roi_heads.box_predictor.bbox_pred.") else 1
            if target.shape[0] == 1 or old.shape[0] == 1:  # class-agnostic mask logits: one shared channel
                if target.shape == old.shape:
                    target.copy_(old)
                continue
            if target.shape[1:] != old.shape[1:]:
                raise CheckpointError(
                    f"checkpoint parameter {key} has shape {tuple(old.shape)}, "
                    f"the model needs {tuple(target.shape)}"
                )
            for new_row, old_row in pairs:
                n, o = new_row * rows_per_class, old_row * rows_per_class
                if o + rows_per_class <= old.shape[0] and n + rows_per_class <= target.shape[0]:
                    target[n : n + rows_per_class] = old[o : o + rows_per_class]
    return [name for name in ours.names if not checkpoint_classes.has_name(name)]


def _arch_name(model: MaskRCNN) -> str:
    return model.config.arch.get("name", "custom") if model.config.arch else "custom"


def _first_lines(exc: Exception, n: int = 3) -> str:
    return " ".join(str(exc).strip().splitlines()[:n])
