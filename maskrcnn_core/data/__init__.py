"""COCO data: read and validate, write, torch datasets with joint augmentation, synthetic shapes.

The COCO names load with the package and need no torch; the others load on first use, as in
:mod:`maskrcnn_core`: the dataset and the transforms need torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from maskrcnn_core.data.coco import (
    CocoAnnotation,
    CocoData,
    CocoImage,
    CocoValidationError,
    ValidationIssue,
    ValidationReport,
    coco_dict,
    load_coco,
    predictions_to_coco_results,
    write_coco,
)

# Loaded on first use: torch for the datasets; and `python -m maskrcnn_core.data.synthetic` warns when the
# package has already imported the module it is about to run.
_LAZY = {
    "generate_synthetic_dataset": "maskrcnn_core.data.synthetic",
    "InstanceDataset": "maskrcnn_core.data.dataset",
    "collate_detection": "maskrcnn_core.data.dataset",
    "Compose": "maskrcnn_core.data.transforms",
    "RandomHorizontalFlip": "maskrcnn_core.data.transforms",
    "RandomScale": "maskrcnn_core.data.transforms",
    "masks_to_boxes": "maskrcnn_core.data.transforms",
}

__all__ = [
    "CocoAnnotation",
    "CocoData",
    "CocoImage",
    "CocoValidationError",
    "ValidationIssue",
    "ValidationReport",
    "coco_dict",
    "load_coco",
    "predictions_to_coco_results",
    "write_coco",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskrcnn_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from maskrcnn_core.data.dataset import InstanceDataset, collate_detection
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset
    from maskrcnn_core.data.transforms import Compose, RandomHorizontalFlip, RandomScale, masks_to_boxes
