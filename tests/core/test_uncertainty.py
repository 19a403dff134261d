"""Uncertainty scores: crafted mask and class probabilities, the image aggregate, and a real model's pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn_core.engine.uncertainty import (
    class_ambiguity,
    combine,
    image_score,
    mask_ambiguity,
    score_detections,
)
from maskrcnn_core.types import CroppedMask, Prediction


def test_a_half_everywhere_mask_is_most_ambiguous_and_a_decisive_one_scores_zero() -> None:
    half = torch.full((28, 28), 0.5)
    decisive = torch.zeros(28, 28)
    decisive[5:20, 5:20] = 0.98
    soft_edge = decisive.clone()
    soft_edge[5:20, 5] = 0.5  # one ambiguous column out of 15
    got = mask_ambiguity(torch.stack([half, decisive, soft_edge]))
    assert got[0] == pytest.approx(1.0)
    assert got[1] == 0.0
    assert got[2] == pytest.approx(15 / 225)


def test_class_ambiguity_is_one_minus_the_top_two_margin() -> None:
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.1, 0.45, 0.45], [0.6, 0.3, 0.1]])
    assert class_ambiguity(probs) == pytest.approx([0.0, 1.0, 0.7])


def test_an_instance_is_sure_only_when_mask_and_class_are() -> None:
    assert combine(np.array([0.0, 1.0, 0.0, 0.5]), np.array([0.0, 0.0, 1.0, 0.5])) == pytest.approx(
        [0.0, 1.0, 1.0, 0.75]
    )


def test_the_image_score_is_not_the_count_of_detections() -> None:
    crowded_and_sure = image_score(np.full(40, 0.05), np.full(40, 0.95))[0]
    one_unsure = image_score(np.array([0.8]), np.array([0.9]))[0]
    assert one_unsure > crowded_and_sure
    # ten times as many detections of the same kind score the same
    inst, scores = np.array([0.3, 0.3, 0.3]), np.array([0.9, 0.5, 0.95])
    assert image_score(np.tile(inst, 10), np.tile(scores, 10))[0] == pytest.approx(
        image_score(inst, scores)[0]
    )
    # middling scores add to it; faint detections below the considered score do not
    sure = image_score(np.array([0.1, 0.1]), np.array([0.95, 0.95]))
    middling = image_score(np.array([0.1, 0.1]), np.array([0.95, 0.5]))
    assert middling[0] > sure[0] and middling[1] == 1 and sure[1] == 0
    assert image_score(np.array([0.9]), np.array([0.1])) == (0.0, 0)


def test_scores_follow_a_prediction_through_filter() -> None:
    unc = score_detections(
        torch.stack([torch.full((28, 28), 0.5), torch.ones(28, 28)]),
        torch.tensor([[0.1, 0.5, 0.4], [0.0, 1.0, 0.0]]),
        torch.tensor([0.5, 0.99]),
        torch.arange(4.0),
    )
    assert unc.instance.tolist() == pytest.approx([1.0, 0.0])
    assert unc.reason() == (
        "most unsure detection: mask 1.00 ambiguous, class margin 0.10; 1 detection with middling scores"
    )
    faint = score_detections(
        torch.stack([torch.full((28, 28), 0.5), torch.ones(28, 28)]),
        torch.tensor([[0.9, 0.05, 0.05], [0.0, 1.0, 0.0]]),
        torch.tensor([0.05, 0.99]),
    )
    # the faint detection (score 0.05) is the most ambiguous, but the why names the one the score counts
    assert faint.reason() == "most unsure detection: mask 0.00 ambiguous, class margin 1.00"
    prediction = Prediction(
        (10, 10),
        np.zeros((2, 4), np.float32),
        np.array([0.5, 0.99], np.float32),
        np.array([1, 1]),
        np.array([1, 1]),
        (CroppedMask.from_full(np.ones((10, 10), bool)),) * 2,
        uncertainty=unc,
    )
    kept = prediction.filter(0.9)
    assert kept.uncertainty is not None and kept.uncertainty.instance.tolist() == [0.0]
    assert kept.uncertainty.image == unc.image and kept.uncertainty.features is unc.features
    assert Prediction.failed("x", "bad").uncertainty is None


def test_the_predictor_scores_each_image_from_the_same_pass(tmp_path) -> None:
    from tiny_model import TINY

    from maskrcnn_core import mask_rcnn_mobilenet_v2_fpn
    from maskrcnn_core.engine.predictor import Predictor

    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(3, **TINY)
    predictor = Predictor.from_model(model)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80, 96, 3), dtype=np.uint8) for _ in range(3)]
    predictions = predictor.predict(images, score_thresh=0.0)
    assert sum(len(p) for p in predictions) > 0  # random weights still detect: the scores have inputs
    for prediction in predictions:
        unc = prediction.uncertainty
        assert unc is not None and unc.instance.shape == (len(prediction),)
        assert ((unc.instance >= 0) & (unc.instance <= 1)).all()
        assert unc.features is not None and unc.features.shape == (TINY["fpn_channels"],)
        assert np.isfinite(unc.image)
    # different images, different pooled features
    assert not np.allclose(predictions[0].uncertainty.features, predictions[1].uncertainty.features)
