"""Model ▸ Fine-tune…: base model, images, the deterministic train / validation split, and the recipe.

The defaults (active model, corrected and verified images, 20 % validation, 10 epochs, the engine's
learning rate for the batch, the model's own frozen stages, automatic device) make one click work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.project.records import ImageStatus, ModelVersionRecord
from app.project.training_set import DEFAULT_VAL_FRACTION, split_images
from app.session.finetune import FinetuneSettings, finetune_learning_rate

IMAGE_CHOICES = (
    ("Corrected and verified images", (ImageStatus.VERIFIED, ImageStatus.CORRECTED)),
    ("Verified images only", (ImageStatus.VERIFIED,)),
)
BACKBONE_STAGES = 5  # ResNet: stem + 4 stages; the engine maps the count onto other backbones


class FinetuneDialog(QDialog):
    """``images_by_status`` lists the usable image names per status (to show the split live)."""

    def __init__(
        self,
        bases: Sequence[ModelVersionRecord],
        active_id: int | None,
        images_by_status: Mapping[ImageStatus, Sequence[str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune")
        self._images = images_by_status
        self.base = QComboBox()
        for version in bases:
            self.base.addItem(f"{version.name}  ({version.arch})", version.id)
        if active_id is not None and self.base.findData(active_id) >= 0:
            self.base.setCurrentIndex(self.base.findData(active_id))
        self.name = QLineEdit()
        self.name.setPlaceholderText("automatic: <base>-ft<n>")
        self.images = QComboBox()
        for text, statuses in IMAGE_CHOICES:
            self.images.addItem(text, statuses)
        self.val_percent = QSpinBox()
        self.val_percent.setRange(5, 50)
        self.val_percent.setSuffix(" %")
        self.val_percent.setValue(round(DEFAULT_VAL_FRACTION * 100))
        self.split_label = QLabel()
        self.val_list = QListWidget()
        self.val_list.setMaximumHeight(90)
        self.val_list.setToolTip("Chosen by a hash of each file name, so they stay the same from run to run")
        self.length_unit = QComboBox()
        self.length_unit.addItems(["epochs", "iterations"])
        self.epochs = QDoubleSpinBox()
        self.epochs.setRange(0.1, 1000)
        self.epochs.setValue(10.0)
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 1_000_000)
        self.iterations.setValue(200)
        self.iterations.setVisible(False)
        self.length_unit.currentTextChanged.connect(self._length_unit_changed)
        length = QHBoxLayout()
        for widget in (self.epochs, self.iterations, self.length_unit):
            length.addWidget(widget)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(0.0, 1.0)
        self.lr.setSingleStep(0.0005)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 64)
        self.batch_size.setValue(FinetuneSettings.batch_size)
        self.batch_size.valueChanged.connect(self._show_automatic_lr)
        self._show_automatic_lr()
        self.frozen = QSpinBox()
        self.frozen.setRange(-1, BACKBONE_STAGES)
        self.frozen.setSpecialValueText("the model's default")
        self.frozen.setValue(-1)
        self.device = QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("New version name", self.name)
        form.addRow("Train on", self.images)
        form.addRow("Validation share", self.val_percent)
        form.addRow("Split", self.split_label)
        form.addRow("Validation images", self.val_list)
        form.addRow("Length", length)
        form.addRow("Learning rate", self.lr)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Frozen backbone stages", self.frozen)
        form.addRow("Device", self.device)
        ok_cancel = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        self.buttons = QDialogButtonBox(ok_cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fine-tune")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.images.currentIndexChanged.connect(self._update_split)
        self.val_percent.valueChanged.connect(self._update_split)
        self._update_split()

    def settings(self) -> FinetuneSettings:
        """What the dialog says, as the controller takes it."""
        by_epochs = self.length_unit.currentText() == "epochs"
        frozen = self.frozen.value()
        return FinetuneSettings(
            base_version_id=int(self.base.currentData()),
            name=self.name.text().strip(),
            statuses=tuple(self.images.currentData()),
            val_fraction=self.val_percent.value() / 100,
            iterations=None if by_epochs else self.iterations.value(),
            epochs=self.epochs.value() if by_epochs else None,
            lr=self.lr.value() or None,
            batch_size=self.batch_size.value(),
            trainable_backbone_layers=None if frozen < 0 else BACKBONE_STAGES - frozen,
            device=self.device.currentText(),
        )

    def split(self) -> tuple[list[str], list[str]]:
        """The ``(train, validation)`` image names the current choices give."""
        names = [n for status in self.images.currentData() for n in self._images.get(status, ())]
        if len(names) < 2:
            return names, []
        return split_images(names, self.val_percent.value() / 100)

    def _update_split(self) -> None:
        train, val = self.split()
        ok = bool(train) and bool(val) and self.base.count() > 0
        if self.base.count() == 0:
            self.split_label.setText("No model to start from: load a model first (Model ▸ Load weights…)")
        elif not ok:
            self.split_label.setText(
                f"{len(train) + len(val)} image(s): fine-tuning needs at least 2 corrected or verified images"
            )
        else:
            self.split_label.setText(f"{len(train)} training, {len(val)} validation images")
        self.val_list.clear()
        self.val_list.addItems(val)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def _show_automatic_lr(self) -> None:
        """0 in the learning-rate box means automatic: say which rate that is for the batch."""
        automatic = finetune_learning_rate(self.batch_size.value())
        self.lr.setSpecialValueText(f"automatic ({automatic:g} for this batch)")

    def _length_unit_changed(self, unit: str) -> None:
        self.epochs.setVisible(unit == "epochs")
        self.iterations.setVisible(unit == "iterations")
