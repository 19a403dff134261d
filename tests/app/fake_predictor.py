"""A stand-in for ``maskrcnn_core.Predictor`` in pure-GUI tests.

It returns real ``Prediction`` objects (two detections per image, at scores 0.9 and 0.3, masks that follow
the image size) and can be slowed down or held at a gate to test cancelling and edit-during-run.
``open_with_fake_model`` opens a real window on a folder with it as the model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from maskrcnn_core.types import Category, ClassMap, CroppedMask, ModelInfo, Prediction

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

FAKE_CATEGORIES = (Category(1, "circle"), Category(2, "square"))


class FakePredictor:
    """Finds a "square" covering the image's central quarter (0.9) and a "circle" in its top-left (0.3)."""

    def __init__(self, *, delay: float = 0.0, gate: threading.Event | None = None, gate_on: str = "") -> None:
        self.model_info = ModelInfo(name="fake", arch="none", class_map=ClassMap(FAKE_CATEGORIES), path=None)
        self.device = "cpu"
        self.description = "CPU (a stand-in for the model)"
        self.tiling = None  # the project's tiling, set by the inference worker; a stand-in tiles nothing
        self.delay = delay
        self.gate = gate
        self.gate_on = gate_on
        self.calls: list[str] = []
        self.thread_names: set[str] = set()

    def predict(self, images, *, score_thresh=0.05, cancel=None, progress=None, tile_progress=None):  # noqa: ANN001, ANN201
        self.thread_names.add(threading.current_thread().name)
        out = []
        for source in images:
            self.calls.append(str(source))
            if self.gate is not None and str(source).endswith(self.gate_on):
                self.gate.wait(10)
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline:
                if cancel is not None and cancel.cancelled:
                    return out
                time.sleep(0.005)
            try:
                with Image.open(source) as im:
                    width, height = im.size
                    im.load()
            except Exception as exc:  # noqa: BLE001 - an unreadable file is a failed prediction, as in Predictor
                out.append(Prediction.failed(str(source), f"cannot read {Path(source).name}: {exc}"))
                continue
            out.append(_two_detections((height, width), str(source)).filter(score_thresh))
        return out


def rect_mask(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int]) -> CroppedMask:
    """The rectangle ``[x0, x1) x [y0, y1)`` of an image of ``size`` (H, W), as a cropped mask."""
    full = np.zeros(size, dtype=bool)
    full[y0:y1, x0:x1] = True
    return CroppedMask.from_full(full)


def _two_detections(size: tuple[int, int], source: str) -> Prediction:
    h, w = size
    boxes, masks = [], []
    for x0, y0, x1, y1 in ((w // 4, h // 4, 3 * w // 4, 3 * h // 4), (0, 0, max(2, w // 5), max(2, h // 5))):
        crop = np.ones((y1 - y0, x1 - x0), dtype=bool)
        masks.append(CroppedMask(x0, y0, crop, (h, w)))
        boxes.append((x0, y0, x1, y1))
    return Prediction(
        image_size=(h, w),
        boxes=np.array(boxes, dtype=np.float32),
        scores=np.array([0.9, 0.3], dtype=np.float32),
        labels=np.array([2, 1], dtype=np.int64),
        category_ids=np.array([2, 1], dtype=np.int64),
        masks=tuple(masks),
        source=source,
    )


def open_with_fake_model(
    qtbot, folder: Path, tmp_path: Path, predictor: FakePredictor | None = None
) -> MainWindow:
    """A shown ``MainWindow`` on ``folder`` whose model, ``predictor`` (a new one by default), has loaded."""
    from app.ui.main_window import MainWindow  # here: the predictor alone must not import the GUI

    predictor = predictor or FakePredictor()
    window = MainWindow(predictor_factory=lambda _source: lambda: predictor)
    qtbot.addWidget(window)
    window.show()
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"not really a checkpoint: the fake predictor ignores it")
    assert window.open_folder(folder, weights=str(weights))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=5000)
    return window
