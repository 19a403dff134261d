"""torchvision's own Mask R-CNN with seeded, calibrated random weights: the reference we compare against.

No pretrained weights can be downloaded here. torchvision's ``maskrcnn_resnet50_fpn`` layout (FrozenBatchNorm
ResNet-50-FPN, 91 classes with background, as in the COCO file) is built with seeded random weights; its
BatchNorm statistics are calibrated on a photo, as a trained network's would be, and the class and mask
logits are scaled so that scores and masks are decisive. Used by the reference tests and by bench/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d

PHOTOS = sorted((Path(__file__).parent / "data" / "photos").glob("*.jpg"))


def load_photo(path: Path) -> torch.Tensor:
    """(3, H, W) float in [0, 1]."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def calibrate_frozen_batchnorm(model: torch.nn.Module, image: torch.Tensor) -> None:
    """Give every FrozenBatchNorm the statistics of its input on ``image``, layer by layer."""

    def set_statistics(module: FrozenBatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    hooks = [
        m.register_forward_pre_hook(set_statistics)
        for m in model.modules()
        if isinstance(m, FrozenBatchNorm2d)
    ]
    with torch.no_grad():
        model.backbone(model.transform([image])[0].tensors)
    for hook in hooks:
        hook.remove()


def build_reference(*, min_size: int = 800, max_size: int = 1333, seed: int = 0) -> TorchvisionMaskRCNN:
    """torchvision's ResNet-50-FPN Mask R-CNN (COCO layout) with decisive seeded weights, in eval mode."""
    torch.manual_seed(seed)
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    model = TorchvisionMaskRCNN(
        _resnet_fpn_extractor(body, 3), num_classes=91, min_size=min_size, max_size=max_size
    )
    calibrate_frozen_batchnorm(model, load_photo(PHOTOS[0]))
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(20.0)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(20.0)
    return model.eval()


def save_reference(folder: Path, **sizes: int) -> tuple[TorchvisionMaskRCNN, Path]:
    """:func:`build_reference` (with ``sizes``: ``min_size``, ``max_size``) and its state dict saved in
    ``folder``, the file torchvision itself would load."""
    reference = build_reference(**sizes)
    path = folder / "reference_maskrcnn_r50_fpn.pth"
    torch.save(reference.state_dict(), path)
    return reference, path
