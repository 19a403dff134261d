"""The RPN's training loss with its head evaluated only where the loss looks.

torchvision's ``RegionProposalNetwork.compute_loss`` takes the head's outputs at every anchor, but the loss
reads only the ``rpn_batch_size_per_image`` anchors its sampler draws per image (256 of ~200 000 for an
800x1067 image). Run densely with gradients, the head's 3x3 convolution and its backward over the finest
FPN level were most of a step on cached features (2.7 s of 5.4 s for ResNet-50-FPN at 800x1067, batch 2,
2 CPU threads). Here the dense pass that the proposals need runs without gradients, and the loss
evaluates the head again at the sampled anchors alone, from each one's 3x3 neighbourhood of features:
the same values and the same gradients (to float rounding), since the loss's gradient is zero at every
anchor it did not sample. Heads with a deeper convolution stack (``conv_depth`` > 1) keep the dense path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork


def supports_sampled_loss(head: nn.Module) -> bool:
    """Whether :func:`sampled_rpn_loss` can evaluate ``head`` sparsely: one 3x3 convolution + ReLU, then
    the two 1x1 predictors (torchvision's ``RPNHead`` with ``conv_depth=1``)."""
    return _only_conv(head) is not None


def _only_conv(head: nn.Module) -> nn.Conv2d | None:
    """The head's one 3x3 convolution (stride 1, padding 1) followed by a ReLU, else ``None``."""
    conv = getattr(head, "conv", None)
    if not isinstance(conv, nn.Sequential) or len(conv) != 1:
        return None
    layers = list(conv[0].children()) if isinstance(conv[0], nn.Sequential) else [conv[0]]
    if len(layers) != 2 or not isinstance(layers[0], nn.Conv2d) or not isinstance(layers[1], nn.ReLU):
        return None
    first = layers[0]
    plain = first.stride == (1, 1) and first.dilation == (1, 1) and first.groups == 1
    if first.kernel_size != (3, 3) or first.padding != (1, 1) or not plain:
        return None
    return first


def sampled_rpn_loss(
    rpn: RegionProposalNetwork,
    features: list[Tensor],
    labels: list[Tensor],
    regression_targets: list[Tensor],
) -> tuple[Tensor, Tensor]:
    """``rpn.compute_loss`` (objectness, box regression) with ``rpn.head`` evaluated at the sampled anchors.

    ``features`` are the levels ``(B, C, H_l, W_l)``; ``labels`` and ``regression_targets`` are per image,
    over the anchors in torchvision's order (level, then row, column, anchor), as
    ``rpn.assign_targets_to_anchors`` and ``rpn.box_coder.encode`` give them. The sampler draws from torch's
    RNG exactly as ``compute_loss`` does.
    """
    head = rpn.head
    conv = _only_conv(head)
    if conv is None:
        raise ValueError("the RPN head is not one 3x3 convolution and ReLU: use compute_loss")
    num_anchors = head.cls_logits.out_channels  # per location
    sampled_pos, sampled_neg = rpn.fg_bg_sampler(labels)
    pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
    neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
    sampled = torch.cat([pos, neg], dim=0)

    per_level = [f.shape[-2] * f.shape[-1] * num_anchors for f in features]
    per_image = sum(per_level)
    starts = torch.tensor([0, *per_level], device=sampled.device).cumsum(0)
    image = sampled // per_image
    within = sampled % per_image
    level = torch.searchsorted(starts[1:], within, right=True)

    weight = conv.weight.flatten(1)  # (C_out, C_in * 9), in the (C_in, ky, kx) order of the patches below
    anchor = within % num_anchors
    position = within // num_anchors - starts[level] // num_anchors
    offsets = torch.arange(3, device=sampled.device)
    parts, order = [], []
    for lvl, feature in enumerate(features):
        chosen = torch.where(level == lvl)[0]
        if len(chosen) == 0:
            continue
        y, x = position[chosen] // feature.shape[-1], position[chosen] % feature.shape[-1]
        padded = F.pad(feature, (1, 1, 1, 1))
        rows = (y[:, None] + offsets)[:, :, None]  # (N, 3, 1)
        cols = (x[:, None] + offsets)[:, None, :]  # (N, 1, 3)
        # advanced indices around a slice: the result is (N, 3, 3, C)
        patches = padded[image[chosen][:, None, None], :, rows, cols].permute(0, 3, 1, 2).flatten(1)
        parts.append(F.linear(patches, weight, conv.bias))
        order.append(chosen)
    grouped = torch.cat(order)
    inverse = torch.empty_like(grouped)
    inverse[grouped] = torch.arange(len(grouped), device=grouped.device)
    hidden = F.relu(torch.cat(parts)[inverse])  # back in the sampler's order: positives first

    rows_all = torch.arange(len(sampled), device=sampled.device)
    cls_weight = head.cls_logits.weight.flatten(1)
    objectness = F.linear(hidden, cls_weight, head.cls_logits.bias)[rows_all, anchor]
    box_weight = head.bbox_pred.weight.flatten(1)
    deltas = F.linear(hidden, box_weight, head.bbox_pred.bias).view(len(sampled), num_anchors, 4)
    deltas = deltas[rows_all, anchor]

    all_labels = torch.cat(labels, dim=0)
    all_targets = torch.cat(regression_targets, dim=0)
    box_loss = F.smooth_l1_loss(deltas[: len(pos)], all_targets[pos], beta=1 / 9, reduction="sum") / (
        sampled.numel()
    )
    objectness_loss = F.binary_cross_entropy_with_logits(objectness, all_labels[sampled])
    return objectness_loss, box_loss
