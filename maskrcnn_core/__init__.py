"""Mask R-CNN Studio's engine: the model, its weights, prediction, data, training and evaluation.

Never imports Qt. The heavy names (everything that needs torch) are loaded on first use, so that
``import maskrcnn_core.types`` stays cheap for the app's GUI process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "MaskRCNNConfig": "maskrcnn_core.model.config",
    "MaskRCNN": "maskrcnn_core.model.mask_rcnn",
    "mask_rcnn_resnet_18_fpn": "maskrcnn_core.model.factories",
    "mask_rcnn_resnet_34_fpn": "maskrcnn_core.model.factories",
    "mask_rcnn_resnet_50_fpn": "maskrcnn_core.model.factories",
    "mask_rcnn_resnet_50_fpn_v2": "maskrcnn_core.model.factories",
    "mask_rcnn_resnet_101_fpn": "maskrcnn_core.model.factories",
    "mask_rcnn_mobilenet_v2_fpn": "maskrcnn_core.model.factories",
    "build_model": "maskrcnn_core.model.factories",
    "load_model": "maskrcnn_core.model.weights",
    "save_checkpoint": "maskrcnn_core.model.weights",
    "Predictor": "maskrcnn_core.engine.predictor",
    "CancelToken": "maskrcnn_core.cancel",
    "Category": "maskrcnn_core.types",
    "ClassMap": "maskrcnn_core.types",
    "CroppedMask": "maskrcnn_core.types",
    "ModelInfo": "maskrcnn_core.types",
    "Prediction": "maskrcnn_core.types",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskrcnn_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from maskrcnn_core.cancel import CancelToken
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.model.config import MaskRCNNConfig
    from maskrcnn_core.model.factories import (
        build_model,
        mask_rcnn_mobilenet_v2_fpn,
        mask_rcnn_resnet_18_fpn,
        mask_rcnn_resnet_34_fpn,
        mask_rcnn_resnet_50_fpn,
        mask_rcnn_resnet_50_fpn_v2,
        mask_rcnn_resnet_101_fpn,
    )
    from maskrcnn_core.model.mask_rcnn import MaskRCNN
    from maskrcnn_core.model.weights import load_model, save_checkpoint
    from maskrcnn_core.types import Category, ClassMap, CroppedMask, ModelInfo, Prediction
