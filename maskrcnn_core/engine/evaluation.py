"""COCO box and mask AP with pycocotools' ``COCOeval`` (numpy + pycocotools; no torch).

``evaluate_coco(gt, results)`` takes the ground truth as a COCO file, dict or ``COCO`` object and the
detections in COCO results format (``image_id``, ``category_id``, ``bbox`` xywh, ``score``,
``segmentation`` RLE), as :func:`maskrcnn_core.data.predictions_to_coco_results` writes them.
pycocotools' printing is captured; its standard summary text is kept in each :class:`IouTypeMetrics`.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn_core.paths import read_json

IOU_TYPES = ("bbox", "segm")
_AREA_RANGES = ("all", "small", "medium", "large")


@dataclass(frozen=True)
class IouTypeMetrics:
    """COCO metrics for one IoU type (``"bbox"`` or ``"segm"``), each in ``[0, 1]``.

    ``ap`` is AP averaged over IoU 0.50:0.95, ``ap50``/``ap75`` at one IoU. A metric is ``None`` when
    the ground truth has nothing it could measure (e.g. ``ap_small`` without small objects).
    ``per_class_ap`` maps category id to AP for the categories that have ground truth.
    """

    iou_type: str
    ap: float | None
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    per_class_ap: dict[int, float]
    summary: str


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics per IoU type, and the category names they refer to."""

    metrics: dict[str, IouTypeMetrics]
    category_names: dict[int, str]
    num_images: int
    num_detections: int

    def __getitem__(self, iou_type: str) -> IouTypeMetrics:
        return self.metrics[iou_type]

    def to_dict(self) -> dict:
        """JSON-serialisable: ``{"bbox": {"ap": ..., "per_class_ap": [{category_id, name, ap}]}, ...}``."""
        out: dict = {"num_images": self.num_images, "num_detections": self.num_detections}
        for iou_type, m in self.metrics.items():
            out[iou_type] = {
                "ap": m.ap,
                "ap50": m.ap50,
                "ap75": m.ap75,
                "ap_small": m.ap_small,
                "ap_medium": m.ap_medium,
                "ap_large": m.ap_large,
                "per_class_ap": [
                    {"category_id": cat_id, "name": self.category_names.get(cat_id, str(cat_id)), "ap": ap}
                    for cat_id, ap in m.per_class_ap.items()
                ],
            }
        return out

    def format_table(self) -> str:
        """A plain-text table: one row per IoU type, then per-class AP with one column per IoU type."""

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        names = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")
        lines = [f"{'':<8}" + "".join(f"{n:>10}" for n in names)]
        for iou_type, m in self.metrics.items():
            lines.append(f"{iou_type:<8}" + "".join(f"{cell(getattr(m, n)):>10}" for n in names))
        class_ids = sorted({cat_id for m in self.metrics.values() for cat_id in m.per_class_ap})
        if class_ids:
            width = max(len("category"), *(len(self.category_names.get(c, str(c))) for c in class_ids)) + 2
            lines.append("")
            lines.append(
                f"{'category':<{width}}{'id':>6}" + "".join(f"{t + ' AP':>10}" for t in self.metrics)
            )
            for cat_id in class_ids:
                row = f"{self.category_names.get(cat_id, str(cat_id)):<{width}}{cat_id:>6}"
                row += "".join(f"{cell(m.per_class_ap.get(cat_id)):>10}" for m in self.metrics.values())
                lines.append(row)
        lines.append(f"\n{self.num_detections} detections on {self.num_images} images")
        return "\n".join(lines)


def evaluate_coco(
    gt: str | Path | dict | COCO,
    results: str | Path | Sequence[dict],
    *,
    iou_types: Sequence[str] = IOU_TYPES,
) -> EvaluationResult:
    """COCO AP of ``results`` against ``gt`` for each of ``iou_types``.

    Raises ``ValueError`` for results that name image or category ids the ground truth lacks (a
    common sign of labels written instead of category ids), or that lack what an IoU type needs.
    Empty results score 0.0 on every category with ground truth.
    """
    unknown_types = [t for t in iou_types if t not in IOU_TYPES]
    if not iou_types or unknown_types:
        raise ValueError(f"iou_types must be some of {IOU_TYPES}, got {list(iou_types)}")
    gt_coco = _load_gt(gt)
    detections = _load_results(results)
    _check_results(detections, gt_coco, iou_types)
    dt_coco = _load_detections(gt_coco, detections)
    metrics = {t: _evaluate(gt_coco, dt_coco, t) for t in iou_types}
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt_coco.dataset["categories"]}
    return EvaluationResult(metrics, names, len(gt_coco.getImgIds()), len(detections))


def _load_gt(gt: str | Path | dict | COCO) -> COCO:
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, str | Path):
        try:
            dataset = read_json(gt)
        except ValueError as err:
            raise ValueError(f"cannot read the ground truth {gt}: {err}") from err
        _check_ground_truth(dataset, source=str(gt))
    elif isinstance(gt, dict):
        dataset = copy.deepcopy(gt)  # COCOeval converts polygons to RLE in place
    else:
        raise ValueError(f"gt must be a COCO file path, dict or COCO object, got {type(gt).__name__}")
    if not isinstance(dataset, dict):  # a dict given in memory is the caller's (coco_dict writes valid ones)
        raise ValueError(f"ground truth must be a COCO object, got {type(dataset).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(dataset.get(k), list)]
    if missing:
        raise ValueError(f"ground truth lacks the list(s) {missing}")
    sizes = {
        im.get("id"): (im.get("height"), im.get("width")) for im in dataset["images"] if isinstance(im, dict)
    }
    for ann in dataset["annotations"]:
        segm = ann.get("segmentation")
        if isinstance(segm, list) and segm and isinstance(segm[0], int | float):
            ann["segmentation"] = [segm]  # one polygon written flat, as the validator reads it
        # COCOeval needs both; files written by other tools sometimes leave them out.
        ann["iscrowd"] = int(ann.get("iscrowd", 0))
        if "area" not in ann:
            if ann.get("image_id") not in sizes:
                raise ValueError(
                    f"ground-truth annotation {ann.get('id')} names unknown image id {ann.get('image_id')}"
                )
            ann["area"] = _annotation_area(ann, *sizes[ann["image_id"]])
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_ground_truth(dataset: object, *, source: str) -> None:
    """The validator that import and training use (:func:`~maskrcnn_core.data.coco.validate_coco`),
    stricter here: a ground-truth annotation it would skip changes the score, so it is refused."""
    from maskrcnn_core.data.coco import validate_coco

    _, report = validate_coco(dataset, None, source=source)  # raises CocoValidationError when fatal
    if report.skipped:
        raise ValueError(
            f"the ground truth {source} holds {len(report.skipped)} unusable entries, which would change "
            f"the score; fix them:\n{report.summary()}"
        )


def _annotation_area(ann: dict, height: int | None, width: int | None) -> float:
    """The mask area of a ground-truth annotation (its box area when it has no mask).

    ``height`` and ``width`` are its image's, needed to decode a polygon or uncompressed RLE mask.
    """
    segm = ann.get("segmentation")
    if not segm:
        return float(ann["bbox"][2] * ann["bbox"][3])
    if height is None or width is None:
        raise ValueError(
            f"ground-truth image {ann.get('image_id')} lacks the height and width its masks need"
        )
    if isinstance(segm, list):
        return float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(segm, height, width))))
    if isinstance(segm.get("counts"), list):
        segm = mask_utils.frPyObjects(segm, height, width)
    return float(mask_utils.area(segm))


def _load_results(results: str | Path | Sequence[dict]) -> list[dict]:
    loaded: object = results
    if isinstance(results, str | Path):
        try:
            loaded = read_json(results)
        except ValueError as err:
            raise ValueError(f"cannot read the results {results}: {err}") from err
    if not isinstance(loaded, Sequence) or not all(isinstance(r, dict) for r in loaded):
        raise ValueError("results must be a list of dicts in COCO results format")
    return copy.deepcopy(list(loaded))  # pycocotools' loadRes adds keys to each result


def _check_results(detections: list[dict], gt: COCO, iou_types: Sequence[str]) -> None:
    required = {"image_id", "category_id", "score"} | {
        {"bbox": "bbox", "segm": "segmentation"}[t] for t in iou_types
    }
    for index, det in enumerate(detections):
        missing = required - set(det)
        if missing:
            raise ValueError(
                f"result {index} lacks {sorted(missing)}; needed for {list(iou_types)} evaluation"
            )
    image_ids = {d["image_id"] for d in detections} - set(gt.getImgIds())
    if image_ids:
        raise ValueError(f"results name image ids the ground truth does not have: {sorted(image_ids)}")
    category_ids = {d["category_id"] for d in detections} - set(gt.getCatIds())
    if category_ids:
        raise ValueError(
            f"results name category ids the ground truth does not have: {sorted(category_ids)} "
            f"(known: {sorted(gt.getCatIds())}; were model labels written instead of category ids?)"
        )


def _load_detections(gt: COCO, detections: list[dict]) -> COCO:
    if not detections:
        # loadRes cannot take an empty list; an empty result set is a COCO with no annotations.
        empty = COCO()
        empty.dataset = {
            "images": gt.dataset["images"],
            "categories": gt.dataset["categories"],
            "annotations": [],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            empty.createIndex()
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(detections)


def _evaluate(gt: COCO, dt: COCO, iou_type: str) -> IouTypeMetrics:
    evaluator = COCOeval(gt, dt, iouType=iou_type)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval.stats opens with AP, AP50, AP75, AP small / medium / large; -1 where there is no ground truth
    ap, ap50, ap75, ap_small, ap_medium, ap_large = (None if s < 0 else float(s) for s in evaluator.stats[:6])
    # precision: (IoU thresholds, recall points, categories, area ranges, max detections); -1 = no gt
    precision = evaluator.eval["precision"][:, :, :, _AREA_RANGES.index("all"), -1]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        if values.size:
            per_class[int(cat_id)] = float(values.mean())
    summary = printed.getvalue()
    summary = summary[summary.find(" Average Precision") :].rstrip()
    return IouTypeMetrics(
        iou_type, ap, ap50, ap75, ap_small, ap_medium, ap_large, per_class_ap=per_class, summary=summary
    )
