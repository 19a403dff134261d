"""Builders for each Mask R-CNN variant, and ``build_model`` to rebuild one from a checkpoint's ``arch``.

Every builder records how it was called in ``config.arch`` (``{"name": ..., "kwargs": {...}}``), which
checkpoints store, so a checkpoint rebuilds its own architecture without pickled code.

The classes (a :class:`~maskrcnn_core.types.ClassMap`) come from ``class_map=``, or ``class_names=`` (and
``category_ids=``); else from ``weights=`` when ``num_classes`` is left out or equals the checkpoint's class
count; else they are ``class_1..class_K`` (torchvision's COCO classes when nothing is given). With
``weights=``, the class-specific rows are kept for the classes both sides name, and a warning names the
classes that start untrained or are left out.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from torchvision.models._meta import _COCO_CATEGORIES

from maskrcnn_core.model import backbones
from maskrcnn_core.model.config import MaskRCNNConfig
from maskrcnn_core.model.mask_rcnn import MaskRCNN
from maskrcnn_core.types import ClassMap

#: torchvision's COCO layout: label i is COCO category id i; its unused ids are "N/A (id 12)" etc.
COCO_CLASS_MAP = ClassMap.telling_apart_repeated_names(_COCO_CATEGORIES[1:], range(1, len(_COCO_CATEGORIES)))

FPN_ANCHOR_SIZES = (32, 64, 128, 256, 512)

WeightsArg = str | os.PathLike | None


def mask_rcnn_resnet_50_fpn(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """ResNet-50-FPN, torchvision's ``maskrcnn_resnet50_fpn`` layout (COCO v1 weights: 34.6 mask AP)."""
    return _build("resnet50_fpn", num_classes, weights, kwargs)


def mask_rcnn_resnet_50_fpn_v2(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """ResNet-50-FPN v2, torchvision's ``maskrcnn_resnet50_fpn_v2`` layout (41.8 mask AP): BatchNorm
    backbone and FPN, a two-conv RPN head, a four-conv box head and BatchNorm in the mask head."""
    return _build("resnet50_fpn_v2", num_classes, weights, kwargs)


def mask_rcnn_resnet_101_fpn(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """ResNet-101-FPN."""
    return _build("resnet101_fpn", num_classes, weights, kwargs)


def mask_rcnn_resnet_18_fpn(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """ResNet-18-FPN: a light model for CPU work."""
    return _build("resnet18_fpn", num_classes, weights, kwargs)


def mask_rcnn_resnet_34_fpn(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """ResNet-34-FPN: a light model for CPU work."""
    return _build("resnet34_fpn", num_classes, weights, kwargs)


def mask_rcnn_mobilenet_v2_fpn(
    num_classes: int | None = None, *, weights: WeightsArg = None, **kwargs: Any
) -> MaskRCNN:
    """MobileNetV2-FPN: the lightest model; its backbone starts from ImageNet weights by default
    (``backbone_weights="imagenet"``, available offline), and the heads can be slimmed
    (``fpn_channels``, ``hidden_dim``, ``mask_hidden_channels``) for a model of a few MB."""
    return _build("mobilenet_v2_fpn", num_classes, weights, kwargs)


def build_model(arch: dict, **overrides: Any) -> MaskRCNN:
    """Rebuild a model from a checkpoint's ``arch`` record (``{"name": ..., "kwargs": {...}}``).

    The classes come from ``class_map=`` (or ``class_names=``/``category_ids=``) in ``overrides``."""
    name = arch.get("name")
    if name not in _VARIANTS:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(_VARIANTS)}")
    kwargs = {"backbone_weights": None, **arch.get("kwargs", {}), **overrides}
    num_classes = kwargs.pop("num_classes", None)
    return _build(name, num_classes, None, kwargs)


# ---------------------------------------------------------------------------------------------


def _build(name: str, num_classes: int | None, weights: WeightsArg, kwargs: dict[str, Any]) -> MaskRCNN:
    from maskrcnn_core.model import weights as weights_module

    checkpoint = weights_module.read_checkpoint(weights) if weights is not None else None
    if checkpoint is not None:
        checkpoint.check_arch(name)
        # the checkpoint's own layout (widths, norm, sizes) unless the caller says otherwise
        kwargs = {**(checkpoint.arch or {}).get("kwargs", {}), **kwargs}
        kwargs.setdefault("backbone_weights", None)  # the checkpoint overwrites the backbone anyway
    class_map = _resolve_classes(num_classes, kwargs, checkpoint)
    default_backbone_weights = "imagenet" if name == "mobilenet_v2_fpn" else None
    pretrained = (
        checkpoint is not None or kwargs.get("backbone_weights", default_backbone_weights) is not None
    )
    # torchvision's policy: pretrained statistics stay frozen (small batches), a model from scratch trains
    # BatchNorm and every stage; v2 always uses BatchNorm
    kwargs.setdefault("norm", "batch" if name == "resnet50_fpn_v2" or not pretrained else "frozen")
    kwargs.setdefault("trainable_backbone_layers", 3 if pretrained else 5)
    model = _VARIANTS[name](class_map=class_map, **kwargs)
    if checkpoint is not None:
        untrained = weights_module.load_weights_into(model, checkpoint)
        left_out = [n for n in checkpoint.class_map.names if not class_map.has_name(n)]
        if untrained or left_out:
            # stacklevel 3: the line that called the public factory
            warnings.warn(_class_mismatch_message(untrained, left_out, checkpoint.source), stacklevel=3)
    return model


def _class_mismatch_message(untrained: list[str], left_out: list[str], source: str) -> str:
    def listed(names: list[str]) -> str:
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")

    parts = []
    if untrained:
        parts.append(f"classes that start untrained: {listed(untrained)}")
    if left_out:
        parts.append(f"its classes left out: {listed(left_out)}")
    return (
        f"the model's classes differ from those of {source}: {'; '.join(parts)}. Classes are matched by "
        "name; to keep the checkpoint's classes, leave num_classes out or pass its class count, and no names"
    )


def _resolve_classes(num_classes: int | None, kwargs: dict[str, Any], checkpoint: Any) -> ClassMap:
    """The model's classes: ``class_map``, or ``class_names`` (+ ``category_ids``), or the checkpoint's
    when ``num_classes`` is left out or equals its count, else ``class_1..class_K``; COCO's by default."""
    class_map = kwargs.pop("class_map", None)
    class_names = kwargs.pop("class_names", None)
    category_ids = kwargs.pop("category_ids", None)
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer (background excluded), got {num_classes!r}")
    if class_map is not None and (class_names is not None or category_ids is not None):
        raise ValueError("give either class_map or class_names/category_ids, not both")
    if class_map is None and class_names is not None:
        class_map = ClassMap.from_lists(class_names, category_ids)
    if class_map is not None:
        if not isinstance(class_map, ClassMap):
            raise ValueError(f"class_map must be a ClassMap, got {type(class_map).__name__}")
        if num_classes is not None and num_classes != class_map.num_classes:
            raise ValueError(f"num_classes is {num_classes} but {class_map.num_classes} classes were given")
        return class_map
    if checkpoint is not None and num_classes in (None, checkpoint.class_map.num_classes):
        known = checkpoint.class_map
    elif num_classes is None:
        known = COCO_CLASS_MAP
    else:
        known = ClassMap.numbered(num_classes)
    return known if category_ids is None else ClassMap.from_lists(known.names, category_ids)


def _resnet_variant(depth: int, v2: bool = False) -> Callable[..., MaskRCNN]:
    def build(
        *,
        class_map: ClassMap,
        norm: str,
        trainable_backbone_layers: int,
        backbone_weights: str | None = None,
        fpn_channels: int = 256,
        hidden_dim: int = 1024,
        mask_hidden_channels: int = 256,
        min_size: int | tuple[int, ...] = 800,
        max_size: int = 1333,
        class_agnostic_masks: bool = False,
    ) -> MaskRCNN:
        arch_kwargs = dict(locals())
        for key in ("class_map", "backbone_weights"):
            arch_kwargs.pop(key)
        arch_kwargs.pop("depth", None)
        arch_kwargs.pop("v2", None)
        backbone = backbones.resnet_fpn(
            depth,
            norm=norm,
            trainable_layers=trainable_backbone_layers,
            fpn_channels=fpn_channels,
            fpn_batch_norm=v2,
            backbone_weights=backbone_weights,
        )
        name = f"resnet{depth}_fpn" + ("_v2" if v2 else "")
        config = MaskRCNNConfig(
            backbone=backbone,
            feat_channels=fpn_channels,
            num_classes=class_map.num_classes,
            use_fpn=True,
            anchor_sizes=FPN_ANCHOR_SIZES,
            hidden_dim=hidden_dim,
            dropout=0.0,
            mask_hidden_channels=mask_hidden_channels,
            class_names=class_map.names,
            category_ids=class_map.category_ids,
            class_agnostic_masks=class_agnostic_masks,
            min_size=_size(min_size),
            max_size=max_size,
            rpn_conv_depth=2 if v2 else 1,
            box_head_conv_layers=4 if v2 else 0,
            head_batch_norm=v2,
            arch={"name": name, "kwargs": _plain(arch_kwargs)},
        )
        return MaskRCNN(config)

    return build


def _mobilenet_v2_variant(
    *,
    class_map: ClassMap,
    norm: str,
    trainable_backbone_layers: int,
    backbone_weights: str | None = "imagenet",
    fpn_channels: int = 256,
    hidden_dim: int = 1024,
    mask_hidden_channels: int = 256,
    returned_stages: tuple[int, ...] = (2, 3, 4),
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256),
    min_size: int | tuple[int, ...] = 800,
    max_size: int = 1333,
    class_agnostic_masks: bool = False,
) -> MaskRCNN:
    arch_kwargs = dict(locals())
    for key in ("class_map", "backbone_weights"):
        arch_kwargs.pop(key)
    backbone = backbones.mobilenet_v2_fpn(
        norm=norm,
        trainable_layers=trainable_backbone_layers,
        fpn_channels=fpn_channels,
        returned_stages=tuple(returned_stages),
        backbone_weights=backbone_weights,
    )
    levels = len(returned_stages) + 1  # + the max-pooled "pool" level
    if len(anchor_sizes) != levels:
        raise ValueError(f"anchor_sizes needs one size per FPN level ({levels}), got {anchor_sizes}")
    config = MaskRCNNConfig(
        backbone=backbone,
        feat_channels=fpn_channels,
        num_classes=class_map.num_classes,
        use_fpn=True,
        anchor_sizes=tuple(anchor_sizes),
        hidden_dim=hidden_dim,
        dropout=0.0,
        mask_hidden_channels=mask_hidden_channels,
        class_names=class_map.names,
        category_ids=class_map.category_ids,
        class_agnostic_masks=class_agnostic_masks,
        min_size=_size(min_size),
        max_size=max_size,
        fpn_levels=tuple(str(i) for i in range(len(returned_stages))),
        arch={"name": "mobilenet_v2_fpn", "kwargs": _plain(arch_kwargs)},
    )
    return MaskRCNN(config)


def _size(value: int | Sequence[int]) -> int | tuple[int, ...]:
    return int(value) if isinstance(value, int) else tuple(int(v) for v in value)


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists: checkpoints hold only plain data (``torch.load(weights_only=True)``)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


_VARIANTS: dict[str, Callable[..., MaskRCNN]] = {
    "resnet18_fpn": _resnet_variant(18),
    "resnet34_fpn": _resnet_variant(34),
    "resnet50_fpn": _resnet_variant(50),
    "resnet50_fpn_v2": _resnet_variant(50, v2=True),
    "resnet101_fpn": _resnet_variant(101),
    "mobilenet_v2_fpn": _mobilenet_v2_variant,
}
