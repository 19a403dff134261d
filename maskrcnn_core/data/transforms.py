"""Joint augmentation of an image and its instance targets, keeping boxes and masks consistent (torch).

A transform is a callable ``(image, target) -> (image, target)``: ``image`` is a ``(3, H, W)`` float
tensor in ``[0, 1]``; ``target`` holds ``boxes`` ``(N, 4)`` float32 xyxy in pixels (``x2``/``y2``
exclusive edges), ``labels`` ``(N,)`` int64 and ``masks`` ``(N, H, W)`` uint8; other keys pass through.

Random draws come from the ``generator`` given, else from torch's global RNG — never Python's
``random`` — so a resumed training run that restores torch's RNG state replays the same augmentation.
Every call makes the same draws whatever they decide, so one transform never shifts another's stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Target = dict[str, Any]  # tensors, plus e.g. the int "image_id"
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror image, masks and boxes left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if torch.rand((), generator=self.generator).item() >= self.p:
            return image, target
        return image.flip(-1), hflip_target(target, image.shape[-1])

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def hflip_target(target: Target, width: int) -> Target:
    """``target`` of an image ``width`` pixels wide, mirrored left-right (boxes and masks)."""
    boxes = target["boxes"]
    # pixel x covers [x, x + 1) and lands on W - 1 - x, so the edges x1, x2 become W - x2, W - x1
    flipped = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    return {**target, "boxes": flipped, "masks": target["masks"].flip(-1)}


class RandomScale:
    """Scale jitter: resize by ``s ~ U(min_scale, max_scale)``, then crop or pad back to the input size.

    The image is resized bilinearly (antialiased when shrinking), the masks by nearest neighbour on
    pixel centres. A larger image is cropped at a random window; a smaller one is padded with zeros on
    the bottom and right. Keeping the size makes the objects' scale vary even when the model resizes
    every image to a fixed size afterwards (a plain resize would then be undone). Boxes are recomputed
    from the masks; instances left with no mask pixel are dropped (with their labels).
    """

    def __init__(
        self, min_scale: float, max_scale: float, *, generator: torch.Generator | None = None
    ) -> None:
        if not 0.0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale} and {max_scale}")
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        scale_draw, y_draw, x_draw = torch.rand(3, generator=self.generator).tolist()
        scale = self.min_scale + (self.max_scale - self.min_scale) * scale_draw
        height, width = image.shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(
            image[None], size=size, mode="bilinear", align_corners=False, antialias=scale < 1
        )[0]
        masks = target["masks"]
        if masks.shape[0]:
            masks = F.interpolate(masks[None], size=size, mode="nearest-exact")[0]
        else:
            masks = masks.new_zeros((0, *size))
        top = int(y_draw * (size[0] - height + 1)) if size[0] > height else 0
        left = int(x_draw * (size[1] - width + 1)) if size[1] > width else 0
        image = _crop_or_pad(image, top, left, height, width)
        masks = _crop_or_pad(masks, top, left, height, width)
        keep = (masks.flatten(1) != 0).any(dim=1)  # bool: any() of uint8 stays uint8
        masks = masks[keep]
        return image, {
            **target,
            "boxes": masks_to_boxes(masks),
            "labels": target["labels"][keep],
            "masks": masks,
        }

    def __repr__(self) -> str:
        return f"RandomScale(min_scale={self.min_scale}, max_scale={self.max_scale})"


def _crop_or_pad(x: Tensor, top: int, left: int, height: int, width: int) -> Tensor:
    """``x[..., top:top + height, left:left + width]``, zero-padded bottom/right up to ``(height, width)``."""
    x = x[..., top : top + height, left : left + width]
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight boxes ``(N, 4)`` float32 xyxy (``x2``/``y2`` exclusive) of non-empty ``(N, H, W)`` masks.

    Unlike ``torchvision.ops.masks_to_boxes``, whose ``x2``/``y2`` are the last pixel's index, the
    edges here are exclusive, as everywhere in this product.
    """
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    cols, rows = (masks != 0).any(dim=1), (masks != 0).any(dim=2)  # (N, W), (N, H)
    if not cols.any(dim=1).all():
        raise ValueError("masks_to_boxes needs non-empty masks; got an empty one")
    x1, y1 = cols.int().argmax(dim=1), rows.int().argmax(dim=1)
    x2 = masks.shape[2] - cols.flip(1).int().argmax(dim=1)
    y2 = masks.shape[1] - rows.flip(1).int().argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
