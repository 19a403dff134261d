"""The heavy, shape-stable sub-networks of a Mask R-CNN, behind one small interface.

Detection runs four dense networks — backbone + FPN with the RPN head on top, the box head with its
predictor, the mask head with its predictor — between steps that stay in torch (anchors, proposals, NMS,
RoIAlign, post-processing). :class:`SubNetworks` is what ``MaskRCNN.detect`` calls for the dense part, so
an execution backend (``maskrcnn_core.engine.openvino_backend``) can run those networks compiled while the
model, its verbs and its checkpoints stay what they are. :class:`TorchSubNetworks` is the model itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from maskrcnn_core.model.mask_rcnn import MaskRCNN


class SubNetworks(Protocol):
    """The dense parts of detection. Inputs and outputs are torch tensors on the model's device."""

    def features_and_objectness(
        self, images: Tensor
    ) -> tuple[OrderedDict[str, Tensor], list[Tensor], list[Tensor]]:
        """Normalised, padded ``(B, 3, H, W)`` images → the feature levels by name, and the RPN head's
        objectness and box deltas per level."""
        ...

    def box_outputs(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """RoI-pooled ``(R, C, 7, 7)`` features → class logits ``(R, K + 1)`` and box deltas."""
        ...

    def mask_logits(self, pooled: Tensor) -> Tensor:
        """RoI-pooled ``(N, C, 14, 14)`` features → mask logits ``(N, K + 1 or 1, 28, 28)``."""
        ...


class TorchSubNetworks:
    """The model's own modules, in torch: what every model runs unless a backend compiles them."""

    def __init__(self, model: MaskRCNN) -> None:
        self.model = model

    def features_and_objectness(
        self, images: Tensor
    ) -> tuple[OrderedDict[str, Tensor], list[Tensor], list[Tensor]]:
        features = self.model._features(images)
        objectness, deltas = self.model.rpn.head(list(features.values()))
        return features, objectness, deltas

    def box_outputs(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        heads = self.model.roi_heads
        return heads.box_predictor(heads.box_head(pooled))

    def mask_logits(self, pooled: Tensor) -> Tensor:
        heads = self.model.roi_heads
        return heads.mask_predictor(heads.mask_head(pooled))
