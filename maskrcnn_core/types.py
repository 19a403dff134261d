"""Plain data shared by the engine and the app: dataclasses and numpy only, never torch.

Coordinate conventions used everywhere in the product:

- Images are ``(H, W)``; a pixel ``(y, x)`` covers ``[x, x + 1) x [y, y + 1)``.
- Boxes are float32 ``xyxy`` in original-image pixels (``x1``/``y1`` exclusive edges).
- A mask is a :class:`CroppedMask`: a bool array covering only its box, plus the box origin.
  A full-image mask per instance is never kept (100 of them for a 12-megapixel photo are 1.2 GB
  as bool, 4.8 GB as float).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Category:
    """A class the model knows: the dataset's own category id and its name."""

    id: int
    name: str


@dataclass(frozen=True, eq=False)
class CroppedMask:
    """A binary mask stored as the crop ``mask`` whose top-left pixel is ``(y0, x0)``.

    ``mask`` is a ``(h, w)`` bool array; ``image_size`` is the full image's ``(H, W)``.
    The crop always lies inside the image.
    """

    x0: int
    y0: int
    mask: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.mask.dtype != np.bool_ or self.mask.ndim != 2:
            raise ValueError(
                f"CroppedMask.mask must be a 2-D bool array, got {self.mask.dtype} {self.mask.shape}"
            )
        h, w = self.mask.shape
        height, width = self.image_size
        if self.x0 < 0 or self.y0 < 0 or self.x0 + w > width or self.y0 + h > height:
            raise ValueError(
                f"crop ({self.x0}, {self.y0}, {w}x{h}) does not fit in an image of {width}x{height}"
            )

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """The crop's extent ``(x0, y0, x1, y1)`` in image pixels, ``x1``/``y1`` exclusive."""
        h, w = self.mask.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def tight_box(self) -> tuple[int, int, int, int] | None:
        """The box of the set pixels, ``(x0, y0, x1, y1)`` exclusive; ``None`` when empty."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(self.mask.any(axis=0))
        return (
            self.x0 + int(cols[0]),
            self.y0 + int(rows[0]),
            self.x0 + int(cols[-1]) + 1,
            self.y0 + int(rows[-1]) + 1,
        )

    def to_full(self) -> np.ndarray:
        """The ``(H, W)`` bool mask of the whole image."""
        full = np.zeros(self.image_size, dtype=bool)
        x0, y0, x1, y1 = self.crop_box
        full[y0:y1, x0:x1] = self.mask
        return full

    @classmethod
    def from_full(cls, full: np.ndarray) -> CroppedMask:
        """Crop an ``(H, W)`` mask to the box of its set pixels (an empty mask keeps a 0x0 crop)."""
        full = np.asarray(full, dtype=bool)
        if full.ndim != 2:
            raise ValueError(f"expected an (H, W) mask, got shape {full.shape}")
        image_size = (int(full.shape[0]), int(full.shape[1]))
        rows = np.flatnonzero(full.any(axis=1))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=bool), image_size)
        cols = np.flatnonzero(full.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(x0, y0, full[y0:y1, x0:x1].copy(), image_size)


@dataclass(frozen=True, eq=False)
class Prediction:
    """What the model found in one image.

    ``boxes`` (N, 4) float32 xyxy in original pixels, ``scores`` (N,) float32 sorted high to low,
    ``labels`` (N,) int64 contiguous model labels in ``1..num_classes``, ``category_ids`` (N,) int64
    the dataset's own ids for those labels, ``masks`` one :class:`CroppedMask` per detection.
    A file that could not be read gives a Prediction with ``error`` set and no detections.
    """

    image_size: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    masks: tuple[CroppedMask, ...]
    source: str | None = None
    error: str | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def ok(self) -> bool:
        return self.error is None

    def filter(self, score_thresh: float) -> Prediction:
        """The detections scoring at least ``score_thresh``; no model run needed."""
        keep = np.flatnonzero(self.scores >= score_thresh)
        return Prediction(
            image_size=self.image_size,
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=self.labels[keep],
            category_ids=self.category_ids[keep],
            masks=tuple(self.masks[i] for i in keep),
            source=self.source,
            error=self.error,
        )

    @classmethod
    def failed(cls, source: str | None, error: str) -> Prediction:
        """The result for an image that could not be processed."""
        return cls(
            image_size=(0, 0),
            boxes=np.zeros((0, 4), dtype=np.float32),
            scores=np.zeros((0,), dtype=np.float32),
            labels=np.zeros((0,), dtype=np.int64),
            category_ids=np.zeros((0,), dtype=np.int64),
            masks=(),
            source=source,
            error=error,
        )


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded checkpoint is: shown in the app's status bar and stored with predictions."""

    name: str
    arch: str
    categories: tuple[Category, ...]
    path: str | None = None
    metadata: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)
