"""Score a model on a COCO dataset: predict every image, then COCOeval box and mask AP.

Used by training's periodic validation, by ``python -m maskrcnn_core evaluate --weights``, and by the app
to compare two model versions on the same validation images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.data.coco import CocoData, coco_dict, predictions_to_coco_results
from maskrcnn_core.engine.evaluation import EvaluationResult, evaluate_coco
from maskrcnn_core.engine.predictor import Predictor


def evaluate_model(
    model: torch.nn.Module | Predictor,
    data: CocoData,
    *,
    score_thresh: float = 0.05,
    batch_size: int = 2,
    cancel: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """COCO AP of ``model`` on ``data``'s images against ``data``'s own annotations.

    The model's classes are matched to the dataset's by category id (the model predicts the ids it was
    trained with), unless a class name both share has different ids on the two sides: then they are
    matched by name, and ``notify`` is told so. A class the dataset lacks produces no scored detections.
    """
    predictor = model if isinstance(model, Predictor) else Predictor.from_model(model, batch_size=batch_size)
    paths = [image.path for image in data.images]
    predictions = predictor.predict(paths, score_thresh=score_thresh, cancel=cancel, progress=progress)
    failed = [p for p in predictions if not p.ok]
    if failed:
        raise ValueError(f"{len(failed)} validation images could not be read, e.g. {failed[0].error}")
    images = data.images[: len(predictions)]  # fewer when cancelled: score what was predicted
    results = predictions_to_coco_results(predictions, [im.id for im in images])
    by_name = predictor.model_info.class_map.ids_by_name_where_ids_disagree(data.class_map)
    if by_name is not None:
        if notify is not None:
            notify(
                "the model's category ids differ from the file's for the same class names; "
                "matching classes by name: "
                + ", ".join(f"{data.class_map.category_id_to_name(t)} {o}->{t}" for o, t in by_name.items())
            )
        results = [
            {**r, "category_id": by_name[r["category_id"]]} for r in results if r["category_id"] in by_name
        ]
    results = [r for r in results if data.class_map.has_category_id(r["category_id"])]
    return evaluate_coco(coco_dict(images, data.categories), results)
