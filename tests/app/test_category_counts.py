"""The Categories panel counts what is shown: the truth rule at the current score threshold, over the whole
project, in one store query; it follows the score slider."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from fake_predictor import FakePredictor, open_with_fake_model

from app.project.records import NewInstance, Provenance
from app.project.truth import annotations_of
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.types import CroppedMask

pytestmark = pytest.mark.gui


def _panel_counts(window) -> dict[int, int]:
    panel = window.category_panel
    return {
        category_id: int(re.search(r"\((\d+)\)$", panel.item(row).text()).group(1))
        for row, category_id in enumerate(panel.category_ids())
    }


def _rule_counts(store, threshold: float) -> dict[int, int]:
    """The truth rule applied image by image in Python (what the canvas shows on each image)."""
    counts = Counter(
        r.category_id
        for image in store.images()
        for r in annotations_of(store.instances(image.id), threshold)
    )
    return {c.id: counts.get(c.id, 0) for c in store.categories()}


def _instance(category_id: int, provenance: Provenance, score: float | None, *, crowd: bool = False):
    full = np.zeros((48, 64), dtype=bool)
    full[4:12, 4:12] = True
    mask = CroppedMask.from_full(full)
    return NewInstance(
        category_id=category_id,
        rle=mask_to_rle(mask),
        box=(4.0, 4.0, 12.0, 12.0),
        area=mask.area,
        provenance=provenance,
        score=score,
        iscrowd=crowd,
    )


def test_counts_follow_the_score_slider(qtbot, images_folder, tmp_path):
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=20_000):
        window.segment_all_action.trigger()
    doc = window.document
    store = doc.store
    # A person's low-scoring instance always counts; a crowd region never does.
    image = doc.images()[0].id
    category = store.categories()[0].id
    doc.apply_edit(
        image,
        add=[
            _instance(category, Provenance.EDITED, 0.1),
            _instance(category, Provenance.IMPORTED, None, crowd=True),
        ],
    )
    qtbot.waitUntil(lambda: _panel_counts(window) == _rule_counts(store, 0.5), timeout=3000)
    everything = Counter(r.category_id for r in store.instances())
    assert sum(_panel_counts(window).values()) < sum(everything.values())  # the hidden are not counted
    window.view_controls.score_slider.setValue(20)
    assert doc.score_threshold == pytest.approx(0.2)
    assert _panel_counts(window) == _rule_counts(store, 0.2)
    assert sum(_panel_counts(window).values()) == sum(everything.values()) - 1  # all but the crowd region
    window.view_controls.score_slider.setValue(95)
    assert _panel_counts(window) == _rule_counts(store, 0.95)
    window.close()


def test_the_store_count_is_one_query_that_agrees_with_the_rule(qtbot, images_folder, tmp_path, monkeypatch):
    window = open_with_fake_model(qtbot, images_folder, tmp_path, FakePredictor())
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=20_000):
        window.segment_all_action.trigger()
    store = window.document.store
    queries = []
    original = store._query
    monkeypatch.setattr(store, "_query", lambda *a: queries.append(a) or original(*a))
    for threshold in (0.0, 0.3, 0.31, 0.9, 1.0):
        expected = {k: v for k, v in _rule_counts(store, threshold).items() if v}
        queries.clear()
        assert store.annotation_counts(threshold) == expected
        assert len(queries) == 1
    window.close()
