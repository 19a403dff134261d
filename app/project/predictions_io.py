"""Predictions made elsewhere (a COCO *results* file) into the project (no Qt, no torch).

A results file is what ``maskrcnn-core predict`` writes and pycocotools' ``loadRes`` reads: a list of
detections ``{image_id, category_id, segmentation (RLE), score, bbox}``. ``predict`` without ``--coco``
adds each image's ``file_name``; otherwise the image list it was given (a COCO file: ``images`` and
``categories``) says which file each ``image_id`` is and what each ``category_id`` is called. A category id
the image list does not name is looked up in the classes the project recorded for the model of that name
(a model the project has used), then among the project's categories (a model fine-tuned here predicts
the project's own ids).

The detections are stored by the rule of the window's own auto-segmentation
(:mod:`app.project.model_results`): only new and predicted images take them (corrected and verified images
are a person's work and are left alone), only untouched predictions are replaced, and a detection that
repeats a person's instance is dropped. The model is recorded as a model version of the project.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from app.project.file_hash import file_sha256
from app.project.mask_ops import instance_box
from app.project.model_results import apply_model_result, needs_segmentation
from app.project.records import Detection, ImageResult
from app.project.store import ProjectStore
from maskrcnn_core.image_io import ImageReadError, image_size
from maskrcnn_core.masks import InvalidSegmentationError, mask_to_rle, segmentation_to_mask
from maskrcnn_core.paths import read_json

# What the imported predictions' model version records as its architecture: the file does not say.
RESULTS_FILE_ARCH = "COCO results file"
MAX_REPORT_LINES = 20  # per reason: a results file can hold 100,000 detections


@dataclass
class PredictionsSummary:
    """What a results-file import did."""

    images: int = 0  # images whose predictions were stored
    detections: int = 0  # detections stored
    left_alone: int = 0  # corrected or verified images the file had detections for
    model_version_id: int | None = None
    skipped: list[str] = field(default_factory=list)

    def headline(self) -> str:
        return (
            f"imported {self.detections} predictions on {self.images} images (model version "
            f"{self.model_version_id}); left {self.left_alone} corrected or verified images alone; skipped "
            f"{len(self.skipped)} entries"
        )

    @property
    def report(self) -> str:
        return "\n".join(f"  skipped: {line}" for line in self.skipped)


def import_predictions(
    store: ProjectStore,
    results_path: Path,
    *,
    model_name: str | None = None,
    image_list: Path | None = None,
) -> PredictionsSummary:
    """Store a COCO results file's detections as predictions of the model ``model_name`` (default: the
    file's name). ``image_list``: the COCO file ``predict`` was given (image ids and category names).

    A detection that cannot be used (an unknown image id or category, a mask of another size than its
    image, a malformed RLE or score) is skipped with a line in the report; nothing already in the project
    is lost. Raises ``ValueError`` for a file that is not a results file.
    """
    results_path = Path(results_path)
    results = read_json(results_path)
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError(f"{results_path}: not a COCO results file (a list of detections)")
    name = model_name or results_path.name
    files, listed = _image_list(image_list) if image_list is not None else ({}, {})
    known = [dict(v.categories) for v in store.model_versions() if v.name == name and v.categories]
    names = {c.id: c.name for c in store.categories()} | (known[-1] if known else {}) | listed
    summary = PredictionsSummary()
    reasons: dict[str, list[str]] = defaultdict(list)
    by_image: dict[str, list[dict]] = defaultdict(list)
    for index, entry in enumerate(results):
        file_name = entry.get("file_name") or files.get(entry.get("image_id"))
        if not isinstance(file_name, str):
            reasons["unknown image id"].append(
                f"detection {index}: image id {entry.get('image_id')!r} is not named "
                + ("in the image list" if image_list else "(no file_name: give the image list predict had)")
            )
            continue
        by_image[file_name].append(entry)
    version_id = store.add_model_version(
        name=name,
        arch=RESULTS_FILE_ARCH,
        path=str(results_path.resolve()),
        sha256=file_sha256(results_path),
        categories=sorted(names.items()),
    )
    summary.model_version_id = version_id
    root = store.images_dir.resolve()
    for file_name, entries in by_image.items():
        path = (root / file_name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            reasons["missing image"].append(f"{file_name}: not in {root}")
            continue
        store.add_images([path.relative_to(root).as_posix()])
        image = store.image_by_name(path.relative_to(root).as_posix())
        assert image is not None, "added above"
        if image.error:
            reasons["unusable image"].append(f"{file_name}: {image.error}")
            continue
        if not needs_segmentation(image):
            summary.left_alone += 1
            continue
        try:
            size = image_size(path)
        except ImageReadError as exc:
            reasons["unusable image"].append(f"{file_name}: {exc}")
            continue
        detections = []
        for entry in entries:
            try:
                detections.append(_detection(entry, size, names))
            except ValueError as exc:
                reasons[str(exc).split(":")[0]].append(f"{file_name}: {exc}")
        result = ImageResult(image.id, size, tuple(detections))
        outcome = apply_model_result(
            store, result, expected_revision=image.revision, model_version_id=version_id
        )
        if outcome.applied:
            summary.images += 1
            summary.detections += outcome.added
        else:
            reasons["not applied"].append(f"{file_name}: {outcome.reason}")
    for lines in reasons.values():
        summary.skipped += lines[:MAX_REPORT_LINES]
        if len(lines) > MAX_REPORT_LINES:
            summary.skipped.append(f"... and {len(lines) - MAX_REPORT_LINES} more like it")
    return summary


def _detection(entry: dict, size: tuple[int, int], names: dict[int, str]) -> Detection:
    category_id, score = entry.get("category_id"), entry.get("score")
    if not isinstance(category_id, int) or category_id not in names:
        raise ValueError(f"unknown category: category id {category_id!r} is not named")
    if not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
        raise ValueError(f"bad score: {score!r} is not a number in [0, 1]")
    segmentation = entry.get("segmentation")
    if not isinstance(segmentation, dict):
        raise ValueError("no mask: the segmentation is not an RLE")
    try:
        mask = segmentation_to_mask(segmentation, size)
    except InvalidSegmentationError as exc:
        raise ValueError(f"bad mask: {exc}") from None
    return Detection(names[category_id], mask_to_rle(mask), instance_box(mask), mask.area, float(score))


def _image_list(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """``(image id -> file name, category id -> name)`` of the COCO file ``predict`` was given."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: not a COCO file with an images list")
    files = {
        i["id"]: i["file_name"]
        for i in data["images"]
        if isinstance(i, dict) and isinstance(i.get("id"), int) and isinstance(i.get("file_name"), str)
    }
    categories = {
        c["id"]: c["name"]
        for c in data.get("categories") or []
        if isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
    }
    return files, categories
