"""xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_finetune_tiers.py

Screenshots of fine-tuning with tiers, from real runs of the engine on the CPU: a synthetic folder whose
truth (two classes the bundled demo model knows, circle and ring, and two it has never seen, hexagon and
ellipse) is imported and verified; the demo model is the base.

1. A first run of the heads tier; once its two versions are compared, the window with the Training panel's
   table (known classes, new classes) and its verdict: ``finetune_known_classes.png``.
2. Model ▸ Fine-tune… again: the dialog offers the tier the project used, says what Automatic picks on
   this machine and estimates the time from the first run's measurement: ``finetune_dialog_tiers.png``.
3. That run under way: the Training panel with the caching progress, or the steps and the time left:
   ``finetune_panel_time_left.png``.
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)

tmp = scratch_folder("shot-finetune-tiers-")
os.environ["XDG_DATA_HOME"] = str(tmp / "data")
os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QDialogButtonBox  # noqa: E402

from app.project.model_sources import DEMO_MODEL  # noqa: E402
from app.project.records import ImageStatus  # noqa: E402
from app.session.finetune import FinetuneSettings  # noqa: E402
from app.ui.finetune_dialog import FinetuneDialog  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from maskrcnn_core.data.synthetic import generate_synthetic_dataset  # noqa: E402
from maskrcnn_core.protocol import CachingEvent, ProgressEvent  # noqa: E402

CLASSES = ("circle", "ring", "hexagon", "ellipse")
NUM_IMAGES, NUM_VERIFIED = 24, 20
FIRST_RUN_STEPS, SECOND_RUN_STEPS = 40, 200
OUT = ROOT / "docs" / "screenshots"

app = QApplication(sys.argv[:1])


def wait(condition, timeout: float) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the screenshot's run took too long")
        app.processEvents()
        time.sleep(0.02)


def shoot(widget, name: str) -> None:  # noqa: ANN001
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    app.primaryScreen().grabWindow(0).copy(widget.frameGeometry()).save(str(OUT / name))
    print("saved", OUT / name)


truth_path = generate_synthetic_dataset(tmp / "folder", num_images=NUM_IMAGES, seed=21, class_names=CLASSES)
truth = json.loads(truth_path.read_text())
kept = {im["id"] for im in truth["images"][:NUM_VERIFIED]}
verified = tmp / "verified.json"
verified.write_text(
    json.dumps(
        dict(
            truth,
            images=[im for im in truth["images"] if im["id"] in kept],
            annotations=[a for a in truth["annotations"] if a["image_id"] in kept],
        )
    )
)

window = MainWindow()
window.resize(1500, 900)
window.show()
window.resizeDocks([window.training_dock], [620], Qt.Orientation.Vertical)  # the panel is the subject
assert window.open_folder(tmp / "folder" / "images", weights=str(DEMO_MODEL))
wait(lambda: window.segmentation.model is not None, 120)
window.import_annotation_file(verified)
for image in window.document.images():
    if image.status is ImageStatus.CORRECTED:
        window.document.set_verified(image.id, True)
finetune = window.finetune

# 1. a measured heads run, and its comparison
finetune.start(
    FinetuneSettings(
        base_version_id=window.registry.active_id, iterations=FIRST_RUN_STEPS, device="cpu", tier="heads"
    )
)
wait(lambda: finetune.comparison is not None, 900)
window.training_dock.raise_()
shoot(window, "finetune_known_classes.png")
for row in finetune.comparison.rows:
    print(f"{row.name:14} {row.base_ap} -> {row.new_ap}")
print(finetune.comparison.verdict)

# 2. the dialog, with the estimate from run 1
events: list = []
finetune.trainingEvent.connect(events.append)


def fill_dialog() -> None:
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, FinetuneDialog)
    dialog.length_unit.setCurrentText("iterations")
    dialog.iterations.setValue(SECOND_RUN_STEPS)
    dialog.device.setCurrentText("cpu")
    dialog.adjustSize()
    shoot(dialog, "finetune_dialog_tiers.png")
    print("tier:", dialog.tier.currentText(), "| time:", dialog.estimate_label.text())
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


QTimer.singleShot(300, fill_dialog)
window.finetune_action.trigger()

# 3. the run under way: the caching pass, then the steps with the time left
wait(
    lambda: (
        any(isinstance(e, CachingEvent) for e in events) or any(isinstance(e, ProgressEvent) for e in events)
    ),
    600,
)
wait(lambda: sum(isinstance(e, ProgressEvent) for e in events) >= 5, 600)
window.training_dock.raise_()
shoot(window, "finetune_panel_time_left.png")
print("panel:", window.training_panel.progress.text(), "|", window.training_panel.figures.text())
finetune.cancel()
wait(lambda: not finetune.running, 300)
window.close()
