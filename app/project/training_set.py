"""The training set of a fine-tuning run, built from the project's checked images (no Qt, no torch).

The images a person corrected or verified are written as two COCO files, ``train.json`` and
``val.json``, in the run folder; the training process reads them with the images where they are.

The train / validation split is a pure function of each image's file name (a hash), so the same image
stays on the same side from one run to the next and a new image does not reshuffle the others: the
comparison of two model versions is made on the same validation images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.project.records import ImageRecord, ImageStatus, InstanceRecord
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from app.project.truth import annotations_of, crowd_regions_of
from maskrcnn_core.data.coco import CocoAnnotation, CocoImage, write_coco, write_json_atomic
from maskrcnn_core.image_io import ImageReadError, image_size
from maskrcnn_core.types import Category, ClassMap

DEFAULT_VAL_FRACTION = 0.2
TRAIN_JSON = "train.json"
VAL_JSON = "val.json"


class TrainingSetError(ValueError):
    """The project does not hold what a fine-tuning run needs; the message says what to do."""


@dataclass(frozen=True)
class TrainingSet:
    """What a run trains and validates on. ``categories`` are ``(project category id, name)`` pairs."""

    train_json: Path
    val_json: Path
    images_dir: Path  # the file names of both files are relative to it
    train_images: tuple[str, ...]
    val_images: tuple[str, ...]
    categories: tuple[tuple[int, str], ...]
    num_annotations: int
    # the validation images' truth as stored (with its provenance): what the comparison is scored against
    val_truth: tuple[InstanceRecord, ...] = ()


def split_key(file_name: str) -> float:
    """Where ``file_name`` falls in ``[0, 1)``: the first 8 bytes of its SHA-256, as a fraction."""
    digest = hashlib.sha256(file_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_images(file_names: Iterable[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """``(train, validation)`` names: an image is a validation image when its key is below the fraction.

    With two images or more neither side is left empty: the image with the smallest key goes to
    validation (or the largest to training), which is as deterministic as the rest.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"the validation share must be between 0 and 1, got {val_fraction}")
    names = sorted(set(file_names), key=split_key)
    train = [n for n in names if split_key(n) >= val_fraction]
    val = [n for n in names if split_key(n) < val_fraction]
    if len(names) >= 2 and not val:
        val.append(train.pop(0))
    if len(names) >= 2 and not train:
        train.append(val.pop())
    return sorted(train), sorted(val)


def eligible_images(store: ProjectStore, statuses: Sequence[ImageStatus]) -> list[ImageRecord]:
    """The project's usable images whose status is one of ``statuses`` (corrected and/or verified)."""
    wanted = set(statuses)
    return [im for im in store.images() if im.status in wanted and not im.error]


def build_training_set(
    store: ProjectStore,
    out_dir: Path,
    *,
    statuses: Sequence[ImageStatus] = (ImageStatus.VERIFIED, ImageStatus.CORRECTED),
    val_fraction: float = DEFAULT_VAL_FRACTION,
    keep_classes: Sequence[str] = (),
    score_threshold: float | None = None,
) -> TrainingSet:
    """Write ``train.json`` and ``val.json`` of the chosen images into ``out_dir``.

    An image's truth is what the person sees on it: their own instances (edited, verified, imported)
    and the predictions they left in place at or above the score threshold (the project's slider by
    default). The categories are those the instances use plus the project categories named in
    ``keep_classes`` (the base model's classes, so fine-tuning does not drop a class the chosen
    images happen not to show).
    """
    threshold = ProjectSettings(store).score_threshold if score_threshold is None else score_threshold
    records = eligible_images(store, statuses)
    train_names, val_names = split_images((im.file_name for im in records), val_fraction)
    if not train_names or not val_names:
        raise TrainingSetError(
            f"fine-tuning needs at least 2 corrected or verified images (one to train on, one to "
            f"validate on); the project has {len(records)}. Correct or verify more images first."
        )
    by_name = {im.file_name: im for im in records}
    stored = {im.file_name: store.instances(im.id) for im in records}
    truth = {name: annotations_of(instances, threshold) for name, instances in stored.items()}
    keep = set(keep_classes)
    used = {r.category_id for rs in truth.values() for r in rs}
    categories = [c for c in store.categories() if c.id in used or c.name in keep]
    if not any(truth[n] for n in train_names):
        raise TrainingSetError(
            "the training images hold no instances to learn from; draw or keep at least one object"
        )
    coco_categories = [Category(c.id, c.name) for c in categories]
    class_map = ClassMap(tuple(coco_categories))
    class_ids = {c.id for c in categories}

    def coco_images(names: Sequence[str], *, with_crowd_regions: bool = False) -> list[CocoImage]:
        """The images and their truth; ``with_crowd_regions`` adds their crowd regions (``iscrowd``), which
        the validation evaluator treats as regions where detections are neither hits nor misses."""
        out = []
        for name in names:
            image = by_name[name]
            path = store.images_dir / name
            height, width = image.height, image.width
            if height is None or width is None:
                try:
                    height, width = image_size(path)
                except ImageReadError as exc:
                    raise TrainingSetError(f"{name} cannot be read: {exc}") from None
            annotations = tuple(
                CocoAnnotation(
                    r.id, r.category_id, class_map.category_id_to_label(r.category_id), r.rle, r.iscrowd
                )
                for r in truth[name]
                + [
                    r
                    for r in crowd_regions_of(stored[name])
                    if with_crowd_regions and r.category_id in class_ids
                ]
            )
            out.append(CocoImage(image.id, name, path, height, width, annotations))
        return out

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {"description": "Mask R-CNN Studio fine-tuning set", "val_fraction": val_fraction}
    write_coco(out_dir / TRAIN_JSON, coco_images(train_names), coco_categories, info=info)
    # Crowd regions are never trained on; the validation file keeps them so the evaluation ignores them.
    write_coco(
        out_dir / VAL_JSON, coco_images(val_names, with_crowd_regions=True), coco_categories, info=info
    )
    return TrainingSet(
        train_json=out_dir / TRAIN_JSON,
        val_json=out_dir / VAL_JSON,
        images_dir=store.images_dir,
        train_images=tuple(train_names),
        val_images=tuple(val_names),
        categories=tuple((c.id, c.name) for c in categories),
        num_annotations=sum(len(rs) for rs in truth.values()),
        val_truth=tuple(r for name in val_names for r in truth[name]),
    )


def ground_truth_for_model(val_json: Path, model_categories: Sequence[tuple[int, str]], out: Path) -> Path:
    """A copy of ``val_json`` whose category ids are the model's, matched by class name.

    The evaluator matches detections to ground truth by category id, and a model trained elsewhere
    numbers its classes its own way. A class the model does not know gets an id no model class has,
    so it scores 0 rather than being matched to some other class.
    """
    data = json.loads(val_json.read_text(encoding="utf-8"))
    model_id = {name: int(i) for i, name in model_categories}
    next_free = max([0, *model_id.values()]) + 1
    mapping: dict[int, int] = {}
    for category in data["categories"]:
        if category["name"] in model_id:
            mapping[category["id"]] = model_id[category["name"]]
        else:
            mapping[category["id"]] = next_free
            next_free += 1
        category["id"] = mapping[category["id"]]
    data["categories"].sort(key=lambda c: c["id"])
    for annotation in data["annotations"]:
        annotation["category_id"] = mapping[annotation["category_id"]]
    write_json_atomic(out, data)
    return out
