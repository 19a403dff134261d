"""How unsure the model is of what it found: per instance and per image, from the detection pass itself.

No extra forward pass: the numbers come from what detection computes anyway.

- **Mask ambiguity** of an instance: the share of its mask's pixels (``M x M`` probabilities relative to
  its box, the pixels above :data:`AMBIGUOUS_LOW`) whose probability lies strictly between
  :data:`AMBIGUOUS_LOW` and :data:`AMBIGUOUS_HIGH`. A 0.5-everywhere mask scores 1, a mask of 0s and 1s 0.
- **Class ambiguity**: ``1 - (p1 - p2)``, the margin between the two highest class probabilities of the
  detection's softmax row (background included: "object or not" is a class decision too).
- **Instance uncertainty**: ``1 - (1 - mask) * (1 - class)``: sure only where both are sure.
- **Image uncertainty**: over the detections scoring at least :data:`CONSIDERED_SCORE` (below it, the
  many faint detections every image has say nothing), the mean of the :data:`TOP_K` highest instance
  uncertainties plus :data:`MIDDLING_WEIGHT` times the share of them with middling scores (the model cannot
  tell whether the object is there at all). Means and shares, so a crowded image does not win by its count.
- **Pooled features**: the global average of the coarsest feature level, for telling near-duplicate images
  apart in a review queue.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from maskrcnn_core.types import Uncertainty

AMBIGUOUS_LOW = 0.3
AMBIGUOUS_HIGH = 0.7
# The image score averages this many of its most uncertain instances.
TOP_K = 3
# Detections scoring less say nothing about the image (every image has many faint ones).
CONSIDERED_SCORE = 0.3
# Detection scores in [CONSIDERED_SCORE, MIDDLING_HIGH): neither a clear object nor clearly nothing.
MIDDLING_HIGH = 0.7
# How much an image whose detections all have middling scores adds to its score.
MIDDLING_WEIGHT = 0.5


def mask_ambiguity(mask_probs: Tensor | np.ndarray) -> np.ndarray:
    """``(N, M, M)`` mask probabilities → ``(N,)`` share of each mask's pixels in the ambiguous band."""
    probs = torch.as_tensor(mask_probs).float()
    if probs.ndim != 3:
        raise ValueError(f"mask_probs must be (N, M, M), got shape {tuple(probs.shape)}")
    flat = probs.flatten(1)
    extent = (flat > AMBIGUOUS_LOW).sum(dim=1)
    ambiguous = ((flat > AMBIGUOUS_LOW) & (flat < AMBIGUOUS_HIGH)).sum(dim=1)
    return (ambiguous.float() / extent.clamp(min=1).float()).cpu().numpy()


def class_ambiguity(class_probs: Tensor | np.ndarray) -> np.ndarray:
    """``(N, K + 1)`` softmax rows → ``(N,)`` one minus the margin between the two top probabilities."""
    probs = torch.as_tensor(class_probs).float()
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"class_probs must be (N, K + 1) with K >= 1, got shape {tuple(probs.shape)}")
    top2 = probs.topk(2, dim=1).values
    return (1.0 - (top2[:, 0] - top2[:, 1])).clamp(0.0, 1.0).cpu().numpy()


def combine(mask: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """One instance score from the two ambiguities: 0 only when both are 0."""
    return 1.0 - (1.0 - np.asarray(mask)) * (1.0 - np.asarray(cls))


def image_score(instance: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """The image's uncertainty from its instances' uncertainties and detection scores, and how many of the
    detections had middling scores."""
    scores = np.asarray(scores, dtype=np.float64)
    considered = scores >= CONSIDERED_SCORE
    instance = np.asarray(instance, dtype=np.float64)[considered]
    if not instance.size:
        return 0.0, 0
    top = np.sort(instance)[::-1][:TOP_K]
    middling = int(np.count_nonzero(scores[considered] < MIDDLING_HIGH))
    return float(top.mean()) + MIDDLING_WEIGHT * middling / instance.size, middling


def pooled_features(
    level: Tensor, valid_sizes: list[tuple[int, int]], padded: tuple[int, int]
) -> list[Tensor]:
    """Per image, the ``(C,)`` mean of feature level ``(B, C, h, w)`` over the part covering the image
    (the batch is padded to ``padded`` ``(H, W)``; ``valid_sizes`` are the images' resized sizes)."""
    _, _, h, w = level.shape
    out = []
    for i, (height, width) in enumerate(valid_sizes):
        rows = max(1, min(h, int(np.ceil(h * height / padded[0]))))
        cols = max(1, min(w, int(np.ceil(w * width / padded[1]))))
        out.append(level[i, :, :rows, :cols].float().mean(dim=(1, 2)))
    return out


def score_detections(
    mask_probs: Tensor, class_probs: Tensor, scores: Tensor, features: Tensor | None = None
) -> Uncertainty:
    """The :class:`~maskrcnn_core.types.Uncertainty` of one image's detections (as ``MaskRCNN.detect``
    returns them: ``mask_probs`` ``(N, M, M)``, ``class_probs`` ``(N, K + 1)``, ``scores`` ``(N,)``)."""
    mask = mask_ambiguity(mask_probs)
    cls = class_ambiguity(class_probs) if len(class_probs) else np.zeros(0, dtype=np.float32)
    instance = combine(mask, cls).astype(np.float32)
    scores_np = scores.detach().float().cpu().numpy()
    image, middling = image_score(instance, scores_np)
    return Uncertainty(
        instance=instance,
        mask_ambiguity=mask.astype(np.float32),
        class_ambiguity=cls.astype(np.float32),
        image=image,
        middling=middling,
        features=None if features is None else features.detach().float().cpu().numpy(),
        considered=scores_np >= CONSIDERED_SCORE,
    )
