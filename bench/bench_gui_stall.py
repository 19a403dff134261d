"""The longest GUI-thread stall while "Auto-segment all" runs (budget: 50 ms), measured with a timer probe.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_stall.py [--images 40] [--weights CKPT]

A ``QTimer`` fires every 5 ms on the GUI thread; a stall is how late it fires. The window is shown, the
browser loads thumbnails and each result is written to the store (one durable commit) and drawn when it
belongs to the current image. With ``--weights`` the real predictor runs in the worker thread; without,
a stand-in spends the same kind of time (NumPy matrix products, which release the GIL like torch does)
and returns 20 real masks per image. Baseline, same run: the probe on the idle window.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from maskrcnn_core.types import Category, ClassMap, CroppedMask, ModelInfo, Prediction  # noqa: E402

BUDGET_MS = 50.0
TICK_MS = 5


class BusyPredictor:
    """About ``seconds`` of GIL-free compute per image, then 20 elliptic masks of realistic size."""

    def __init__(self, seconds: float = 0.15) -> None:
        self.model_info = ModelInfo(
            "busy-stand-in", "numpy", ClassMap((Category(1, "blob"), Category(2, "other"))), None
        )
        self.device = "cpu"
        self.description = "CPU (a stand-in for the model)"
        self.seconds = seconds

    def predict(self, images, *, score_thresh=0.05, cancel=None, progress=None, tile_progress=None):  # noqa: ANN001, ANN201
        from maskrcnn_core.image_io import read_image

        out = []
        a = np.random.default_rng(0).random((400, 400), dtype=np.float32)
        for source in images:
            if cancel is not None and cancel.cancelled:
                break
            rgb = read_image(source)
            h, w = rgb.shape[:2]
            deadline = time.perf_counter() + self.seconds
            while time.perf_counter() < deadline:
                a = (a @ a) / 400.0
            rng = np.random.default_rng(abs(hash(str(source))) % 2**32)
            masks, boxes = [], []
            for _ in range(20):
                rw, rh = int(rng.integers(20, w // 3)), int(rng.integers(20, h // 3))
                x0, y0 = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
                yy, xx = np.mgrid[0:rh, 0:rw]
                crop = ((xx - rw / 2) / (rw / 2)) ** 2 + ((yy - rh / 2) / (rh / 2)) ** 2 <= 1
                masks.append(CroppedMask(x0, y0, crop, (h, w)))
                boxes.append((x0, y0, x0 + rw, y0 + rh))
            scores = np.sort(rng.random(20).astype(np.float32))[::-1]
            out.append(
                Prediction(
                    (h, w),
                    np.array(boxes, np.float32),
                    scores,
                    np.ones(20, np.int64),
                    rng.integers(1, 3, 20).astype(np.int64),
                    tuple(masks),
                    str(source),
                )
            )
        return out


class Probe:
    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000 - TICK_MS)
        self._last = now

    def summary(self) -> tuple[float, float]:
        gaps = np.array(self.gaps or [0.0])
        return float(gaps.max()), float(np.percentile(gaps, 99))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    from app.ui.main_window import MainWindow
    from app.workers.inference import checkpoint_factory
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="gui-stall-") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")
        folder = (
            generate_synthetic_dataset(
                Path(tmp) / "data", num_images=args.images, seed=1, image_size=(480, 640)
            ).parent
            / "images"
        )
        factory = checkpoint_factory if args.weights else (lambda _s: BusyPredictor)
        weights = args.weights or Path(tmp) / "stand-in.pt"
        weights.touch()
        window = MainWindow(predictor_factory=factory)
        window.resize(1400, 900)
        window.show()
        assert window.open_folder(folder, weights=str(weights))
        loop = QEventLoop()
        window.segmentation.modelChanged.connect(lambda _m: loop.quit())
        window.segmentation.modelFailed.connect(lambda e: sys.exit(f"model failed: {e}"))
        loop.exec()

        probe = Probe()
        probe.start()
        idle_until = time.perf_counter() + 2.0
        while time.perf_counter() < idle_until:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
        probe.stop()
        idle_max, idle_p99 = probe.summary()

        probe.start()
        started = time.perf_counter()
        window.segmentation.jobFinished.connect(lambda *_a: loop.quit())
        window.auto_segment_all()
        loop.exec()
        elapsed = time.perf_counter() - started
        probe.stop()
        run_max, run_p99 = probe.summary()
        instances = len(window.document.store.instances())
        model = window.segmentation.model
        window.close()
    ok = run_max < BUDGET_MS
    print(
        f"auto-segment all: {args.images} images, {instances} instances stored in {elapsed:.1f} s "
        f"({model.info.name} on {model.device})"
    )
    print(
        f"GUI-thread stall during the run: max {run_max:.1f} ms, p99 {run_p99:.1f} ms "
        f"(budget {BUDGET_MS:.0f} ms: {'ok' if ok else 'OVER'})"
    )
    print(
        f"baseline, idle window: max {idle_max:.1f} ms, p99 {idle_p99:.1f} ms; "
        f"ratio run/idle max {run_max / max(idle_max, 0.1):.1f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
