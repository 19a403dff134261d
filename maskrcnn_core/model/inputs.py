"""Input checks for the model's verbs: bad input gets a ``ValueError`` that says what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ImagesLike = Tensor | Sequence[Tensor]


def check_images(images: ImagesLike, *, allow_uint8: bool = False) -> list[Tensor]:
    """Validate a ``(B, 3, H, W)`` tensor or a list of ``(3, H, W)`` tensors; return the list of images.

    Float images must be finite; with ``allow_uint8`` an image may also be uint8 in 0..255.
    """
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(
                "images must be a (B, 3, H, W) tensor or a list of (3, H, W) tensors, "
                f"got shape {tuple(images.shape)}"
            )
        image_list = list(images.unbind(0))
    elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
        image_list = list(images)
    else:
        raise ValueError(f"images must be a tensor or a list of tensors, got {type(images).__name__}")
    if not image_list:
        raise ValueError("images is an empty batch: pass at least one image")
    for i, img in enumerate(image_list):
        if not isinstance(img, Tensor):
            raise ValueError(f"image {i} must be a torch.Tensor, got {type(img).__name__}")
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(
                f"image {i} must have shape (3, H, W) (RGB, channels first), got {tuple(img.shape)}"
            )
        if img.shape[1] == 0 or img.shape[2] == 0:
            raise ValueError(f"image {i} has zero size {tuple(img.shape)}")
        if allow_uint8 and img.dtype == torch.uint8:
            continue
        if not img.is_floating_point():
            raise ValueError(
                f"image {i} must be a float tensor with values in [0, 1], got dtype {img.dtype} "
                "(convert uint8 images with img.float() / 255)"
            )
        if not torch.isfinite(img).all():
            raise ValueError(f"image {i} contains NaN or infinite values")
    return image_list


def check_targets(
    targets: Sequence[dict[str, Tensor]], images: list[Tensor], num_classes: int
) -> list[dict[str, Tensor]]:
    """Validate training targets against their images; return them with canonical dtypes."""
    if isinstance(targets, dict) or not isinstance(targets, Sequence):
        raise ValueError("targets must be a list with one dict per image")
    if len(targets) != len(images):
        raise ValueError(f"got {len(targets)} targets for {len(images)} images")
    checked = []
    for i, (target, image) in enumerate(zip(targets, images, strict=False)):
        missing = {"boxes", "labels", "masks"} - set(target)
        if missing:
            raise ValueError(f"target {i} lacks {sorted(missing)} (needs boxes, labels, masks)")
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        n = boxes.shape[0] if boxes.ndim == 2 else -1
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"target {i}: boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
        if labels.shape != (n,):
            raise ValueError(f"target {i}: labels must be ({n},), got {tuple(labels.shape)}")
        h, w = image.shape[-2:]
        if masks.shape != (n, h, w):
            raise ValueError(
                f"target {i}: masks must be ({n}, {h}, {w}) like the image, got {tuple(masks.shape)}"
            )
        if labels.is_floating_point():
            raise ValueError(f"target {i}: labels must be integers, got {labels.dtype}")
        if n and (labels.min() < 1 or labels.max() > num_classes):
            raise ValueError(
                f"target {i}: labels must be in 1..{num_classes}, got {labels.unique().tolist()}"
            )
        if not torch.isfinite(boxes).all():
            raise ValueError(f"target {i}: boxes contain NaN or infinite values")
        degenerate = torch.where((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
        if len(degenerate):
            j = int(degenerate[0])
            raise ValueError(
                f"target {i}: box {j} has no area: {boxes[j].tolist()} (expected x1 < x2, y1 < y2)"
            )
        extra = {k: v for k, v in target.items() if k not in ("boxes", "labels", "masks")}
        checked.append(
            {
                **extra,
                "boxes": boxes.to(image.device, torch.float32),
                "labels": labels.to(image.device, torch.int64),
                "masks": masks.to(image.device, torch.uint8),
            }
        )
    return checked
