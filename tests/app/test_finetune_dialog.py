"""The Fine-tune dialog: one-click defaults, the split it shows, and what its fields become."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from app.project.records import ImageStatus, ModelVersionRecord
from app.project.training_set import split_images
from app.ui.finetune_dialog import FinetuneDialog
from maskrcnn_core.protocol import default_lr

pytestmark = pytest.mark.gui


def _version(version_id: int, name: str) -> ModelVersionRecord:
    path = f"/m/{name}.pt"
    return ModelVersionRecord(version_id, name, "mobilenet_v2_fpn", path, None, ((1, "circle"),), "", None)


IMAGES = {
    ImageStatus.VERIFIED: [f"v{i}.png" for i in range(6)],
    ImageStatus.CORRECTED: [f"c{i}.png" for i in range(14)],
}


def test_defaults_start_from_the_active_model_on_all_checked_images(qtbot):
    dialog = FinetuneDialog([_version(2, "new"), _version(1, "demo")], 1, IMAGES)
    qtbot.addWidget(dialog)
    settings = dialog.settings()
    assert settings.base_version_id == 1
    assert set(settings.statuses) == {ImageStatus.VERIFIED, ImageStatus.CORRECTED}
    assert settings.epochs == 10.0 and settings.iterations is None and settings.lr is None
    assert settings.trainable_backbone_layers is None and settings.device == "auto"
    assert settings.batch_size == 2
    train, val = split_images(IMAGES[ImageStatus.VERIFIED] + IMAGES[ImageStatus.CORRECTED], 0.2)
    assert dialog.split_label.text() == f"{len(train)} training, {len(val)} validation images"
    assert [dialog.val_list.item(i).text() for i in range(dialog.val_list.count())] == val
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def test_fields_become_settings(qtbot):
    dialog = FinetuneDialog([_version(1, "demo")], 1, IMAGES)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.images.setCurrentIndex(1)  # verified only
    dialog.length_unit.setCurrentText("iterations")
    dialog.iterations.selectAll()
    qtbot.keyClicks(dialog.iterations, "75")
    dialog.frozen.setValue(2)
    qtbot.keyClicks(dialog.name, "my-model")
    settings = dialog.settings()
    assert settings.statuses == (ImageStatus.VERIFIED,)
    assert settings.iterations == 75 and settings.epochs is None
    assert settings.trainable_backbone_layers == 3 and settings.name == "my-model"
    train, val = split_images(IMAGES[ImageStatus.VERIFIED], 0.2)
    assert dialog.split_label.text() == f"{len(train)} training, {len(val)} validation images"


def test_heads_only_freezes_the_whole_backbone_so_the_frozen_stages_field_is_off(qtbot):
    dialog = FinetuneDialog([_version(1, "demo")], 1, IMAGES)
    qtbot.addWidget(dialog)
    dialog.frozen.setValue(2)
    dialog.tier.setCurrentIndex(dialog.tier.findData("heads"))
    assert not dialog.frozen.isEnabled() and dialog.settings().trainable_backbone_layers is None
    dialog.tier.setCurrentIndex(dialog.tier.findData("full"))
    assert dialog.frozen.isEnabled() and dialog.settings().trainable_backbone_layers == 3


def test_too_few_images_or_no_model_disable_fine_tune(qtbot):
    dialog = FinetuneDialog([_version(1, "demo")], 1, {ImageStatus.VERIFIED: ["only.png"]})
    qtbot.addWidget(dialog)
    assert "at least 2" in dialog.split_label.text()
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    dialog = FinetuneDialog([], None, IMAGES)
    qtbot.addWidget(dialog)
    assert "load a model first" in dialog.split_label.text()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled()
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
    assert dialog.result() == 0


def test_the_automatic_learning_rate_shown_follows_the_batch(qtbot):
    dialog = FinetuneDialog([_version(1, "demo")], 1, IMAGES)
    qtbot.addWidget(dialog)
    assert dialog.lr.value() == 0 and f"{default_lr(2):g}" in dialog.lr.specialValueText()
    dialog.batch_size.setValue(16)
    assert f"{default_lr(16):g}" in dialog.lr.specialValueText()
    assert dialog.settings().lr is None and dialog.settings().batch_size == 16
