"""Plain data shared by the engine and the app: dataclasses and numpy only, never torch.

Coordinate conventions used everywhere in the product:

- Images are ``(H, W)``; a pixel ``(y, x)`` covers ``[x, x + 1) x [y, y + 1)``.
- Boxes are float32 ``xyxy`` in original-image pixels (``x1``/``y1`` exclusive edges).
- Model labels are contiguous, ``1..K`` (0 is background); :class:`ClassMap` is the one place that maps
  them to the dataset's category ids and the class names.
- A mask is a :class:`CroppedMask`: a bool array covering only its box, plus the box origin.
  A full-image mask per instance is never kept (100 of them for a 12-megapixel photo are 1.2 GB
  as bool, 4.8 GB as float).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Category:
    """A class the model knows: the dataset's own category id and its name."""

    id: int
    name: str


#: The name torchvision's COCO class list gives its unused category ids.
UNUSED_CLASS_NAME = "N/A"


@dataclass(frozen=True)
class ClassMap:
    """The one place where model labels, the dataset's category ids and class names are mapped.

    A model predicts contiguous labels ``1..K`` (0 is background and has no category); a dataset
    names its classes by COCO ``category_id``, which need not be contiguous. Label ``i`` is
    ``categories[i - 1]``. Ids and names are unique, so every lookup goes both ways. Immutable;
    checkpoints, :class:`ModelInfo` and COCO data each carry one.
    """

    categories: tuple[Category, ...]
    _label_of_id: dict[int, int] = field(init=False, repr=False, compare=False)
    _label_of_name: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        categories = tuple(self.categories)
        if not categories:
            raise ValueError("a class map needs at least one class")
        for c in categories:
            if not isinstance(c, Category):
                raise ValueError(f"a class map holds Category entries, got {c!r}")
            if not isinstance(c.id, int | np.integer) or isinstance(c.id, bool):
                raise ValueError(f"category ids must be integers, got {c.id!r} for {c.name!r}")
            if not isinstance(c.name, str) or not c.name:
                raise ValueError(f"class names must be non-empty strings, got {c.name!r} (id {c.id})")
        categories = tuple(Category(int(c.id), c.name) for c in categories)
        ids = [c.id for c in categories]
        names = [c.name for c in categories]
        if len(set(ids)) != len(ids):
            raise ValueError(f"category ids must be unique, got repeated ids {_repeated(ids)}")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got repeated names {_repeated(names)}")
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "_label_of_id", {i: label for label, i in enumerate(ids, start=1)})
        object.__setattr__(self, "_label_of_name", {n: label for label, n in enumerate(names, start=1)})

    # ------------------------------------------------------------------------------- building one

    @classmethod
    def from_lists(cls, names: Iterable[str], category_ids: Iterable[int] | None = None) -> ClassMap:
        """Label ``i`` is ``names[i - 1]`` with ``category_ids[i - 1]`` (default: ids ``1..K``)."""
        names = tuple(names)
        ids = tuple(range(1, len(names) + 1)) if category_ids is None else tuple(category_ids)
        if len(ids) != len(names):
            raise ValueError(f"{len(names)} class names but {len(ids)} category ids: one id per class")
        return cls(tuple(Category(i, n) for i, n in zip(ids, names, strict=True)))

    @classmethod
    def numbered(cls, num_classes: int) -> ClassMap:
        """``class_1 .. class_K`` with ids ``1..K``: the classes of a model nobody has named."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        return cls.from_lists(f"class_{i}" for i in range(1, num_classes + 1))

    @classmethod
    def telling_apart_repeated_names(cls, names: Sequence[str], category_ids: Sequence[int]) -> ClassMap:
        """For class lists written before names had to be unique (torchvision's COCO list repeats
        ``"N/A"`` for its unused ids): a repeated name gets its id, ``"N/A (id 12)"``."""
        counts = Counter(names)
        pairs = zip(names, category_ids, strict=True)
        return cls.from_lists([n if counts[n] == 1 else f"{n} (id {i})" for n, i in pairs], category_ids)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassMap:
        """The inverse of :meth:`to_dict`."""
        missing = [k for k in ("class_names", "category_ids") if k not in data]
        if missing:
            raise ValueError(f"a class map needs {missing}; got keys {sorted(data)}")
        return cls.from_lists(data["class_names"], data["category_ids"])

    def to_dict(self) -> dict[str, list]:
        """Plain data, as checkpoints store it: ``class_names`` and ``category_ids``, label order."""
        return {"class_names": list(self.names), "category_ids": list(self.category_ids)}

    # ---------------------------------------------------------------------------------- the table

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def category_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.categories)

    @property
    def names_in_use(self) -> tuple[str, ...]:
        """The class names a model can really predict: torchvision's COCO layout keeps labels for its
        unused category ids under the placeholder name ``"N/A"`` (``"N/A (id 12)"`` here), which no
        project wants as a category."""
        return tuple(
            n for n in self.names if n != UNUSED_CLASS_NAME and not n.startswith(f"{UNUSED_CLASS_NAME} (id ")
        )

    @property
    def num_classes(self) -> int:
        """``K``, background excluded."""
        return len(self.categories)

    @property
    def labels(self) -> range:
        return range(1, len(self.categories) + 1)

    def __len__(self) -> int:
        return len(self.categories)

    def __iter__(self) -> Iterator[Category]:
        return iter(self.categories)

    # ------------------------------------------------------------------------------------ lookups

    def category(self, label: int) -> Category:
        """The category of model label ``label`` (``1..K``)."""
        label = int(label)
        if not 1 <= label <= len(self.categories):
            raise ValueError(f"labels must be in 1..{len(self.categories)}, got {label}")
        return self.categories[label - 1]

    def label_to_category_id(self, label: int) -> int:
        return self.category(label).id

    def label_to_name(self, label: int) -> str:
        return self.category(label).name

    def category_id_to_label(self, category_id: int) -> int:
        label = self._label_of_id.get(int(category_id))
        if label is None:
            raise ValueError(f"unknown category ids [{int(category_id)}]; known: {list(self.category_ids)}")
        return label

    def category_id_to_name(self, category_id: int) -> str:
        return self.categories[self.category_id_to_label(category_id) - 1].name

    def name_to_label(self, name: str) -> int:
        label = self._label_of_name.get(name)
        if label is None:
            raise ValueError(f"unknown class name {name!r}; known: {list(self.names)}")
        return label

    def has_name(self, name: str) -> bool:
        return name in self._label_of_name

    def has_category_id(self, category_id: int) -> bool:
        return int(category_id) in self._label_of_id

    def ids_by_name_where_ids_disagree(self, other: ClassMap) -> dict[int, int] | None:
        """``{our category id: other's id}`` for every name both maps share, when some shared name has
        different ids in the two (``None`` when the ids agree, or no name is shared: match by id).

        Our classes that ``other`` does not name are left out: their ids mean nothing there.
        """
        shared = [c for c in self.categories if other.has_name(c.name)]
        mapping = {c.id: other.label_to_category_id(other.name_to_label(c.name)) for c in shared}
        if all(ours == theirs for ours, theirs in mapping.items()):
            return None
        return mapping

    def labels_to_category_ids(self, labels: np.ndarray | Sequence[int]) -> np.ndarray:
        """Model labels ``(N,)`` in ``1..K`` to category ids ``(N,)`` int64."""
        labels = np.asarray(labels, dtype=np.int64)
        bad = labels[(labels < 1) | (labels > len(self.categories))]
        if bad.size:
            raise ValueError(f"labels must be in 1..{len(self.categories)}, got {sorted(set(bad.tolist()))}")
        return np.asarray(self.category_ids, dtype=np.int64)[labels - 1]

    def category_ids_to_labels(self, category_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Category ids ``(N,)`` to model labels ``(N,)`` int64 in ``1..K``."""
        category_ids = np.asarray(category_ids, dtype=np.int64)
        unknown = sorted({int(i) for i in category_ids.tolist() if int(i) not in self._label_of_id})
        if unknown:
            raise ValueError(f"unknown category ids {unknown}; known: {list(self.category_ids)}")
        return np.array([self._label_of_id[int(i)] for i in category_ids.tolist()], dtype=np.int64)


def _repeated(values: Sequence[Any]) -> list[Any]:
    return [value for value, count in Counter(values).items() if count > 1]


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
class Uncertainty:
    """How unsure the model was of one image's detections (``maskrcnn_core.engine.uncertainty`` computes it
    from the detection pass itself).

    ``instance``, ``mask_ambiguity`` and ``class_ambiguity`` are ``(N,)`` float32 in ``[0, 1]``, one per
    detection (0: sure); ``image`` the image's score (higher: more worth a person's review), computed over
    every detection the model returned; ``middling`` how many detections had middling scores;
    ``features`` the ``(C,)`` pooled image features that tell near-duplicate images apart, or ``None``;
    ``considered`` ``(N,)`` bool, the detections the image score counts (``None``: all).
    """

    instance: np.ndarray
    mask_ambiguity: np.ndarray
    class_ambiguity: np.ndarray
    image: float
    middling: int = 0
    features: np.ndarray | None = None
    considered: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> Uncertainty:
        """The same image score, with the per-detection arrays of the detections ``keep`` only."""
        return Uncertainty(
            self.instance[keep],
            self.mask_ambiguity[keep],
            self.class_ambiguity[keep],
            self.image,
            self.middling,
            self.features,
            None if self.considered is None else self.considered[keep],
        )

    def reason(self) -> str:
        """Why the image scores what it does, in a few words: its most uncertain detection and the
        middling ones."""
        parts = []
        counted = self.instance if self.considered is None else np.where(self.considered, self.instance, -1.0)
        if counted.size and counted.max() >= 0:
            i = int(np.argmax(counted))
            parts.append(
                f"most unsure detection: mask {self.mask_ambiguity[i]:.2f} ambiguous, "
                f"class margin {1.0 - self.class_ambiguity[i]:.2f}"
            )
        else:
            parts.append("no clear detections")
        if self.middling:
            parts.append(f"{self.middling} detection{'s' if self.middling != 1 else ''} with middling scores")
        return "; ".join(parts)


@dataclass(frozen=True, eq=False)
class Prediction:
    """What the model found in one image.

    ``boxes`` (N, 4) float32 xyxy in original pixels, ``scores`` (N,) float32 sorted high to low,
    ``labels`` (N,) int64 contiguous model labels in ``1..num_classes``, ``category_ids`` (N,) int64
    the dataset's own ids for those labels, ``masks`` one :class:`CroppedMask` per detection.
    A file that could not be read gives a Prediction with ``error`` set and no detections.
    ``uncertainty`` says how unsure the model was (``None`` where nobody computed it).
    """

    image_size: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    masks: tuple[CroppedMask, ...]
    source: str | None = None
    error: str | None = None
    uncertainty: Uncertainty | None = None

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
            uncertainty=None if self.uncertainty is None else self.uncertainty.subset(keep),
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
    class_map: ClassMap
    path: str | None = None
    metadata: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def categories(self) -> tuple[Category, ...]:
        return self.class_map.categories

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.class_map.names
