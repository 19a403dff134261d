"""Save a PNG of the main window with instance overlays on real photos (run it under Xvfb, then look at it).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/screenshot.py --out main_window.png
    xvfb-run -a ... bench/screenshot.py --weights app/resources/models/demo.pt --folder FOLDER --out demo.png

The photos are ``tests/data/photos`` (copied to a temporary folder, so no project is left in the repo).
With ``--weights`` the real predictor runs in the worker thread. Without it, a stand-in predictor that
follows the same protocol segments each photo's central object with OpenCV's GrabCut (the bundled demo
model knows only synthetic shapes, and COCO weights cannot be downloaded everywhere); the status bar then
says "grabcut-stand-in", so the picture never passes for a model's output.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskrcnn_core.types import ClassMap, CroppedMask, ModelInfo, Prediction  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "photos"


class GrabCutPredictor:
    """Finds the main object of a photo: GrabCut started from a centred box."""

    def __init__(self) -> None:
        self.model_info = ModelInfo("grabcut-stand-in", "opencv-grabcut", ClassMap.from_lists(["object"]))
        self.device = "cpu"
        self.description = "CPU (a stand-in for the model)"

    def predict(self, images, *, score_thresh=0.05, cancel=None, progress=None, tile_progress=None):  # noqa: ANN001, ANN201
        from maskrcnn_core.image_io import read_image

        out = []
        for source in images:
            if cancel is not None and cancel.cancelled:
                break
            rgb = read_image(source)
            h, w = rgb.shape[:2]
            mask = np.zeros((h, w), np.uint8)
            rect = (w // 6, h // 10, 2 * w // 3, 4 * h // 5)
            cv2.grabCut(
                rgb[:, :, ::-1].copy(),
                mask,
                rect,
                np.zeros((1, 65)),
                np.zeros((1, 65)),
                4,
                cv2.GC_INIT_WITH_RECT,
            )
            fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
            # Keep the largest connected part: GrabCut leaves specks that no annotator would.
            count, labels = cv2.connectedComponents(fg.astype(np.uint8))
            if count > 1:
                fg = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
            masks = [CroppedMask.from_full(fg)]
            boxes = [m.tight_box() for m in masks]
            out.append(
                Prediction(
                    image_size=(h, w),
                    boxes=np.array(boxes, dtype=np.float32),
                    scores=np.array([0.93], dtype=np.float32),
                    labels=np.ones(len(masks), dtype=np.int64),
                    category_ids=np.ones(len(masks), dtype=np.int64),
                    masks=tuple(masks),
                    source=str(source),
                )
            )
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("main_window.png"))
    parser.add_argument("--folder", type=Path, default=PHOTOS, help="images to open (copied first)")
    parser.add_argument("--weights", type=Path, default=None, help="a checkpoint for the real predictor")
    parser.add_argument("--image", default=None, help="file name to show (default: the first)")
    args = parser.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.workers.inference import checkpoint_factory

    app = QApplication(sys.argv[:1])
    factory = checkpoint_factory if args.weights else (lambda _source: GrabCutPredictor)
    window = MainWindow(predictor_factory=factory)
    window.resize(1500, 900)
    window.show()
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        folder = Path(tmp) / "photos"
        shutil.copytree(
            args.folder, folder, ignore=shutil.ignore_patterns(".maskrcnn-studio", "*.md", "*.json")
        )
        weights = args.weights or Path(tmp) / "stand-in.pt"
        if not weights.exists():
            weights.write_bytes(b"the stand-in predictor reads no weights")
        if not window.open_folder(folder, weights=str(weights)):
            return 1
        loop = QEventLoop()
        seg = window.segmentation
        seg.modelChanged.connect(lambda _m: window.auto_segment_all())
        seg.modelFailed.connect(lambda _e: loop.quit())
        seg.jobFinished.connect(lambda *_a: loop.quit())
        QTimer.singleShot(600_000, loop.quit)
        loop.exec()
        doc = window.document
        target = next((i.id for i in doc.images() if i.file_name == args.image), doc.images()[0].id)
        doc.set_current_image(target)
        window.browser.setCurrentIndex(window.browser.model().index(doc.row_of(target), 0))
        window.canvas.set_show_boxes(True)
        deadline = QTimer()
        deadline.setSingleShot(True)
        deadline.start(5000)
        while not window.canvas.instance_ids() and deadline.isActive():
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        for _ in range(20):  # let thumbnails and the canvas paint
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        window.canvas.fit()
        app.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(args.out))
        print(
            f"{'saved' if ok else 'could not save'} {args.out}: "
            f"{len(window.canvas.instance_ids())} instances shown, "
            f"model {seg.model.info.name if seg.model else 'none'}"
        )
        window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
