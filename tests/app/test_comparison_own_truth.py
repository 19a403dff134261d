"""The comparison says when the validation truth is the base model's own accepted predictions: the base is
then scored against itself and no new version can score better (a new user accepted every image as the
model predicted it, and read "does not score better" after each fine-tune)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from fake_predictor import open_with_fake_model
from pycocotools import mask as mask_utils

from app.project.comparison import BASE_OWN_TRUTH_MAX_SHARE, base_own_truth_share, compare
from app.project.records import ImageStatus, NewInstance, Provenance
from app.project.store import ProjectStore
from app.project.training_set import build_training_set
from app.session.run_history import stored_share
from app.ui.finetune_dialog import FinetuneDialog
from app.ui.panels.training_panel import TrainingPanel


def _segm(ap: float) -> dict:
    return {
        "segm": {"ap": ap, "per_class_ap": [{"category_id": 1, "name": "circle", "ap": ap}]},
        "num_images": 2,
    }


@pytest.fixture
def accepted_project(images_folder, synthetic_dataset):
    """Every image segmented by the base version and accepted as it was (Accept image): a real SQLite
    project file."""
    store = ProjectStore.open(images_folder)
    coco = json.loads(synthetic_dataset.read_text())
    store.add_images(im["file_name"] for im in coco["images"])
    base_id = store.add_model_version(name="base", arch="maskrcnn", path="base.pt", sha256="b", categories=[])
    circle = store.ensure_categories(["circle"])["circle"]
    for entry in coco["images"]:
        image = store.image_by_name(entry["file_name"])
        assert image is not None
        h, w = entry["height"], entry["width"]
        rle = {"size": [h, w], "counts": _box_rle(h, w)}
        predicted = NewInstance(circle, rle, (0, 0, 8, 8), 64, Provenance.PREDICTED, 0.9, base_id)
        assert store.apply_prediction(
            image.id, expected_revision=0, instances=[predicted], model_version_id=base_id, image_size=(h, w)
        )
        accepted = [replace(r, provenance=Provenance.VERIFIED) for r in store.instances(image.id)]
        store.apply_edit(image.id, update=accepted)
        store.set_verified(image.id, True)
    yield store, base_id
    store.close()


def _box_rle(h: int, w: int) -> str:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:8, :8] = 1
    return mask_utils.encode(np.asfortranarray(mask))["counts"].decode()


def test_validation_images_accepted_as_predicted_make_the_verdict_say_so(accepted_project, tmp_path):
    store, base_id = accepted_project
    training_set = build_training_set(store, tmp_path / "run")
    share = base_own_truth_share(training_set.val_truth, base_id)
    assert training_set.val_truth and share == 1.0
    comparison = compare("base", _segm(1.0), "base-ft1", _segm(0.7), base_own_truth_share=share)
    assert comparison.scored_against_itself and not comparison.activates
    assert comparison.verdict.startswith("The validation images were accepted as base predicted them (100%")
    assert "cannot show an improvement: correct a few of them first." in comparison.verdict
    assert comparison.verdict.endswith("base-ft1 does not score better than base; base stays active.")


def test_corrected_validation_images_or_another_models_predictions_give_the_plain_verdict(
    accepted_project, tmp_path
):
    store, base_id = accepted_project
    val_names = build_training_set(store, tmp_path / "first").val_images
    for name in val_names:  # a person corrects the held-out images
        image = store.image_by_name(name)
        edited = [
            replace(r, provenance=Provenance.EDITED, area=r.area - 1) for r in store.instances(image.id)
        ]
        store.apply_edit(image.id, update=edited)
    training_set = build_training_set(store, tmp_path / "second")
    share = base_own_truth_share(training_set.val_truth, base_id)
    assert share == 0.0
    plain = compare("base", _segm(0.6), "base-ft1", _segm(0.5))
    corrected = compare("base", _segm(0.6), "base-ft1", _segm(0.5), base_own_truth_share=share)
    assert not corrected.scored_against_itself and corrected.verdict == plain.verdict
    # the same accepted predictions, judged against a version that did not make them: not its own truth
    other = store.add_model_version(name="other", arch="maskrcnn", path="o.pt", sha256="o", categories=[])
    assert base_own_truth_share(build_training_set(store, tmp_path / "third").val_truth, other) == 0.0


def test_the_rule_is_more_than_the_limit_share_and_none_without_instances():
    at_limit = compare("base", _segm(0.9), "ft", _segm(0.8), base_own_truth_share=BASE_OWN_TRUTH_MAX_SHARE)
    assert not at_limit.scored_against_itself and at_limit.truth_caveat == ""
    assert base_own_truth_share([], 1) is None
    assert compare("base", _segm(0.9), "ft", _segm(0.8)).truth_caveat == ""  # an older run: not known


@pytest.mark.parametrize(("stored", "share"), [(0.75, 0.75), (1, 1.0), (None, None), ("most", None)])
def test_a_stored_share_is_read_back_or_taken_as_unknown(stored, share):
    assert stored_share(stored) == share


def test_the_training_panel_shows_the_caveat_where_the_comparison_is_shown(qtbot):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.show_comparison(compare("base", _segm(1.0), "base-ft1", _segm(0.7), base_own_truth_share=0.9))
    assert panel.verdict.text().startswith("The validation images were accepted as base predicted them (90%")
    assert panel.verdict.text().endswith("Use new version to switch anyway.")


def test_the_fine_tune_dialog_warns_before_the_run_when_the_images_were_accepted_as_predicted(
    qtbot, images_folder, tmp_path
):
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    document, finetune, registry = window.document, window.finetune, window.registry
    assert document is not None and finetune is not None and registry is not None
    store = document.store
    window.auto_segment_all()
    qtbot.waitUntil(lambda: all(im.status is ImageStatus.PREDICTED for im in store.images()), timeout=20_000)
    for image in store.images():  # Accept image on each, as the model predicted it
        accepted = [replace(r, provenance=Provenance.VERIFIED) for r in store.instances(image.id)]
        store.apply_edit(image.id, update=accepted)
        store.set_verified(image.id, True)
    images = {ImageStatus.VERIFIED: [im.file_name for im in store.images()]}
    base = registry.active_id

    def dialog() -> FinetuneDialog:
        shown = FinetuneDialog(
            finetune.base_candidates(), base, images, own_truth_share=finetune.own_truth_share
        )
        qtbot.addWidget(shown)
        return shown

    warned = dialog()
    assert warned.truth_label.isVisibleTo(warned)
    assert (
        "accepted as" in warned.truth_label.text()
        and "correct a few of them first" in warned.truth_label.text()
    )
    for name in warned.split()[1]:  # a person corrects the validation images: the warning goes
        held_out = store.image_by_name(name)
        assert held_out is not None
        edited = [replace(r, provenance=Provenance.EDITED) for r in store.instances(held_out.id)]
        store.apply_edit(held_out.id, update=edited)
    corrected = dialog()
    assert not corrected.truth_label.isVisibleTo(corrected) and corrected.truth_label.text() == ""
    window.close()
