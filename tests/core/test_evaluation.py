"""evaluate_coco against pycocotools' COCOeval, on synthetic ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn_core.data.coco import CocoData, load_coco, predictions_to_coco_results
from maskrcnn_core.data.synthetic import generate_synthetic_dataset
from maskrcnn_core.engine.evaluation import evaluate_coco
from maskrcnn_core.types import Prediction

CATEGORY_IDS = (11, 22, 33, 44)


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CocoData]:
    folder = tmp_path_factory.mktemp("synthetic")
    json_path = generate_synthetic_dataset(folder, num_images=12, seed=11, category_ids=CATEGORY_IDS)
    data, _ = load_coco(json_path, folder / "images")
    return json_path, data


def _perfect_predictions(data: CocoData, drop_category: int | None = None) -> list[dict]:
    """The ground truth as Predictions with score 1.0, written through predictions_to_coco_results."""
    predictions = []
    for image in data.images:
        anns = [a for a in image.annotations if a.category_id != drop_category]
        predictions.append(
            Prediction(
                image_size=(image.height, image.width),
                boxes=np.array([a.bbox for a in anns], dtype=np.float32).reshape(-1, 4),
                scores=np.ones(len(anns), dtype=np.float32),
                labels=np.array([a.label for a in anns], dtype=np.int64),
                category_ids=np.array([a.category_id for a in anns], dtype=np.int64),
                masks=tuple(a.mask for a in anns),
            )
        )
    return predictions_to_coco_results(predictions, [image.id for image in data.images])


def test_ground_truth_as_results_scores_one(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, data = ground_truth
    result = evaluate_coco(json_path, _perfect_predictions(data))

    for iou_type in ("bbox", "segm"):
        metrics = result[iou_type]
        assert metrics.ap == metrics.ap50 == metrics.ap75 == 1.0, iou_type
        assert metrics.per_class_ap == {cat_id: 1.0 for cat_id in CATEGORY_IDS}
        assert "Average Precision" in metrics.summary
    assert result.category_names == {11: "circle", 22: "square", 33: "triangle", 44: "ring"}
    assert result.num_images == 12 and result.num_detections == data.num_annotations


def test_removing_one_class_lowers_exactly_that_class(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, data = ground_truth
    result = evaluate_coco(json_path, _perfect_predictions(data, drop_category=33))

    for iou_type in ("bbox", "segm"):
        assert result[iou_type].per_class_ap == {11: 1.0, 22: 1.0, 33: 0.0, 44: 1.0}
        assert result[iou_type].ap == pytest.approx(0.75)


def test_metrics_equal_cocoeval_on_imperfect_results(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, data = ground_truth
    rng = np.random.default_rng(0)
    results = _perfect_predictions(data)
    for r in results:  # shifted boxes and shuffled scores give APs strictly between 0 and 1
        r["bbox"] = [v + rng.uniform(-3, 3) for v in r["bbox"]]
        r["score"] = float(rng.uniform(0.05, 1.0))
    results = results[::2]
    result = evaluate_coco(json_path, results)

    gt = COCO(str(json_path))
    for iou_type in ("bbox", "segm"):
        evaluator = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        metrics = result[iou_type]
        assert [metrics.ap, metrics.ap50, metrics.ap75] == pytest.approx(evaluator.stats[:3].tolist())
        assert 0.0 < metrics.ap < 1.0
        for cat_id, ap in metrics.per_class_ap.items():  # COCOeval restricted to one category as reference
            single = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), iou_type)
            single.params.catIds = [cat_id]
            single.evaluate()
            single.accumulate()
            single.summarize()
            assert ap == pytest.approx(single.stats[0]), (iou_type, cat_id)


def test_empty_results_score_zero(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, _ = ground_truth
    result = evaluate_coco(json_path, [])
    for iou_type in ("bbox", "segm"):
        assert result[iou_type].ap == 0.0 and result[iou_type].ap50 == 0.0
        assert result[iou_type].per_class_ap == {cat_id: 0.0 for cat_id in CATEGORY_IDS}
    assert result.num_detections == 0


def test_results_file_dict_and_coco_ground_truth_agree(
    ground_truth: tuple[Path, CocoData], tmp_path: Path
) -> None:
    json_path, data = ground_truth
    results = _perfect_predictions(data, drop_category=11)
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    gt_dict = json.loads(json_path.read_text())
    for ann in gt_dict["annotations"]:  # files from other tools may lack these; they are filled in
        del ann["area"], ann["iscrowd"]
    snapshot = json.dumps(gt_dict)

    from_path = evaluate_coco(json_path, results_path, iou_types=("segm",)).to_dict()
    from_dict = evaluate_coco(gt_dict, results, iou_types=("segm",)).to_dict()
    from_coco = evaluate_coco(COCO(str(json_path)), results, iou_types=("segm",)).to_dict()

    assert from_path == from_dict == from_coco
    assert json.dumps(gt_dict) == snapshot, "the caller's ground truth must not be modified"
    assert "bbox" not in from_path and from_path["segm"]["ap"] == pytest.approx(0.75)


def test_to_dict_and_table(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, data = ground_truth
    result = evaluate_coco(json_path, _perfect_predictions(data, drop_category=44))
    as_dict = json.loads(json.dumps(result.to_dict()))  # plain JSON, no NaN

    assert as_dict["segm"]["per_class_ap"][3] == {"category_id": 44, "name": "ring", "ap": 0.0}
    assert as_dict["bbox"]["ap50"] == pytest.approx(0.75)
    table = result.format_table()
    for fragment in ("bbox", "segm", "ring", "circle", "0.750", "detections on 12 images"):
        assert fragment in table


def test_unknown_image_or_category_ids_are_named(ground_truth: tuple[Path, CocoData]) -> None:
    json_path, data = ground_truth
    results = _perfect_predictions(data)
    with pytest.raises(ValueError, match=r"image ids the ground truth does not have: \[404, 405\]"):
        evaluate_coco(json_path, [*results, {**results[0], "image_id": 405}, {**results[0], "image_id": 404}])
    with pytest.raises(ValueError, match=r"category ids the ground truth does not have: \[2\]"):
        evaluate_coco(json_path, [*results, {**results[0], "category_id": 2}])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_types": ("keypoints",)}, "iou_types must be some of"),
        (
            {"results": [{"image_id": 1, "category_id": 11, "score": 1.0}]},
            r"result 0 lacks \['bbox', 'segmentation'\]",
        ),
        ({"results": "/nonexistent/results.json"}, "cannot read the results"),
        ({"gt": {"images": []}}, r"ground truth lacks the list\(s\) \['annotations', 'categories'\]"),
    ],
)
def test_bad_input_gets_a_clear_error(
    ground_truth: tuple[Path, CocoData], kwargs: dict, message: str
) -> None:
    arguments = {"gt": ground_truth[0], "results": [], **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate_coco(**arguments)
