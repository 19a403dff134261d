"""Model ▸ Fine-tune…: base model, images, the deterministic train / validation split, and the recipe.

The defaults (active model, corrected and verified images, 20 % validation, 10 epochs, the engine's
learning rate for the batch, the model's own frozen stages, automatic device, the project's last tier)
make one click work. The dialog says what the automatic tier is on this machine for these images, and how
long the run will take when a run of that tier was measured here before (never a guess).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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

from app.project.comparison import own_truth_caveat
from app.project.records import ImageStatus, ModelVersionRecord
from app.project.run_timing import TimeEstimate
from app.project.training_set import DEFAULT_VAL_FRACTION, split_images
from app.session.finetune import (
    TIER_NAMES,
    FinetuneSettings,
    expected_tier,
    finetune_learning_rate,
    trains_on_gpu,
)
from app.ui.panels.run_progress import format_duration
from maskrcnn_core.protocol import HEADS_TIER_MAX_IMAGES, TIERS

IMAGE_CHOICES = (
    ("Corrected and verified images", (ImageStatus.VERIFIED, ImageStatus.CORRECTED)),
    ("Verified images only", (ImageStatus.VERIFIED,)),
)
BACKBONE_STAGES = 5  # ResNet: stem + 4 stages; the engine maps the count onto other backbones
TIER_CHOICES = {
    "heads": "Heads only: backbone frozen, its features computed once (minutes on a CPU)",
    "full": "Full: the backbone trains too (for a GPU or a large set)",
}
#: ``estimate(settings, num_train_images)``: the run's time from a measured run, ``None`` when none was
Estimator = Callable[[FinetuneSettings, int], TimeEstimate | None]
#: ``own_truth_share(base_version_id, validation_names)``: the share of the validation truth that is the
#: base's own accepted predictions (``FinetuneController.own_truth_share``)
OwnTruthShare = Callable[[int, Sequence[str]], float | None]


class FinetuneDialog(QDialog):
    """``images_by_status`` lists the usable image names per status (to show the split live)."""

    def __init__(
        self,
        bases: Sequence[ModelVersionRecord],
        active_id: int | None,
        images_by_status: Mapping[ImageStatus, Sequence[str]],
        parent: QWidget | None = None,
        *,
        tier: str = FinetuneSettings.tier,
        gpu_available: bool = False,
        estimate: Estimator | None = None,
        own_truth_share: OwnTruthShare | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune")
        self._images = images_by_status
        self._gpu_available = gpu_available
        self._estimate = estimate
        self._own_truth_share = own_truth_share
        self._base_names = {version.id: version.name for version in bases}
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
        # says when the validation images hold the base's own predictions, accepted unedited
        self.truth_label = QLabel()
        self.truth_label.setWordWrap(True)
        self.truth_label.setVisible(False)
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
        self.tier = QComboBox()
        self.tier.setToolTip(
            "Heads only trains the region proposal, box and mask heads on the frozen backbone's features, "
            "computed once: fast, and it keeps what the model knew. Full trains the backbone too."
        )
        for key in TIERS:
            self.tier.addItem(TIER_CHOICES.get(key, key), key)
        self.tier.setCurrentIndex(max(0, self.tier.findData(tier)))
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Base model", self.base)
        form.addRow("New version name", self.name)
        form.addRow("Train on", self.images)
        form.addRow("Validation share", self.val_percent)
        form.addRow("Split", self.split_label)
        form.addRow("Validation images", self.val_list)
        form.addRow("", self.truth_label)
        form.addRow("Length", length)
        form.addRow("Learning rate", self.lr)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Frozen backbone stages", self.frozen)
        form.addRow("Device", self.device)
        form.addRow("Tier", self.tier)
        form.addRow("Time", self.estimate_label)
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
        for box in (self.device, self.tier, self.base, self.length_unit):
            box.currentIndexChanged.connect(self._update_tier_and_time)
        self.base.currentIndexChanged.connect(self._update_truth_caveat)
        for spin in (self.epochs, self.iterations, self.batch_size):
            spin.valueChanged.connect(self._update_tier_and_time)
        self._update_split()

    def settings(self) -> FinetuneSettings:
        """What the dialog says, as the controller takes it."""
        by_epochs = self.length_unit.currentText() == "epochs"
        frozen = self.frozen.value()
        heads_only = self.tier.currentData() == "heads"
        return FinetuneSettings(
            base_version_id=int(self.base.currentData()),
            name=self.name.text().strip(),
            statuses=tuple(self.images.currentData()),
            val_fraction=self.val_percent.value() / 100,
            iterations=None if by_epochs else self.iterations.value(),
            epochs=self.epochs.value() if by_epochs else None,
            lr=self.lr.value() or None,
            batch_size=self.batch_size.value(),
            # heads only freezes the whole backbone: the engine refuses trainable stages with it
            trainable_backbone_layers=None if frozen < 0 or heads_only else BACKBONE_STAGES - frozen,
            device=self.device.currentText(),
            tier=str(self.tier.currentData()),
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
        self._update_truth_caveat()
        self._update_tier_and_time()

    def _update_truth_caveat(self) -> None:
        """Warn before the run when its comparison cannot show an improvement (comparison.py's rule)."""
        val, base_id = self.split()[1], self.base.currentData()
        caveat = ""
        if self._own_truth_share is not None and val and base_id is not None:
            share = self._own_truth_share(int(base_id), val)
            caveat = own_truth_caveat(self._base_names.get(int(base_id), "the base model"), share)
        self.truth_label.setText(caveat)
        self.truth_label.setVisible(bool(caveat))

    def _update_tier_and_time(self) -> None:
        """The automatic tier's text says what it picks here and why; the time is estimated anew."""
        num_train = len(self.split()[0])
        settings = self.settings() if self.base.count() else None
        device = self.device.currentText()
        on_gpu = trains_on_gpu(device, self._gpu_available)
        automatic = expected_tier(
            FinetuneSettings(base_version_id=0, device=device),
            gpu_available=self._gpu_available,
            num_train_images=num_train,
        )
        if automatic == "heads" and not on_gpu:
            why = "on this CPU"
        elif automatic == "heads":
            why = f"for {num_train} training images on the GPU (under {HEADS_TIER_MAX_IMAGES})"
        else:
            why = f"for {num_train} training images on the GPU"
        self.tier.setItemText(self.tier.findData("auto"), f"Automatic: {TIER_NAMES[automatic]} {why}")
        self.frozen.setEnabled(self.tier.currentData() != "heads")  # heads only: all of it is frozen
        self.estimate_label.setText(self._time_text(settings, num_train))

    def _time_text(self, settings: FinetuneSettings | None, num_train: int) -> str:
        if settings is None or num_train == 0 or self._estimate is None:
            return "no estimate yet"
        tier = TIER_NAMES[
            expected_tier(settings, gpu_available=self._gpu_available, num_train_images=num_train)
        ]
        estimate = self._estimate(settings, num_train)
        if estimate is None:
            device = "GPU" if trains_on_gpu(settings.device, self._gpu_available) else "CPU"
            return f"no estimate yet: no {tier} run was measured on this {device} (this run will be)"
        steps = settings.total_iterations(num_train)
        source = estimate.source
        parts = f"{steps} steps × {estimate.training_s / steps:.2f} s"
        if estimate.caching_s:
            parts += f" + {format_duration(estimate.caching_s)} computing features"
        return (
            f"about {format_duration(estimate.total_s)} ({parts}; measured in {source.run_name}, "
            f"{source.train_images} training images)"
        )

    def _show_automatic_lr(self) -> None:
        """0 in the learning-rate box means automatic: say which rate that is for the batch."""
        automatic = finetune_learning_rate(self.batch_size.value())
        self.lr.setSpecialValueText(f"automatic ({automatic:g} for this batch)")

    def _length_unit_changed(self, unit: str) -> None:
        self.epochs.setVisible(unit == "epochs")
        self.iterations.setVisible(unit == "iterations")
