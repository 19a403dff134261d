"""The window's "Auto-segment all" throughput against a plain headless loop over the same images.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_app_throughput.py [--images 40] [--rounds 2]

Images: the demo's synthetic shapes (the generator and size of ``maskrcnn-studio --demo``, more of them
so that the run is long enough to time), in a fresh folder with no verified image, so every image is
segmented. Model: the bundled demo model on the CPU, with the backend the app picks (``auto``).

App: from "Auto-segment all" to the job's end, with the window shown, every result RLE-encoded in the
worker, written to the project's SQLite file and drawn when it is the current image. Headless, in the
same process: ``Predictor(weights).predict([path])`` for each image in turn, the results discarded.
The app calls the model with two images at a time on a CPU, so the headless loop runs both ways: one image
a call (the plain loop) and two. Rounds alternate; the best round of each is compared.
Ratio = headless time / app time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402  (bench/machine.py, beside this script)
from PySide6.QtCore import QEventLoop  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.resources import DEMO_MODEL  # noqa: E402


def _app_run(folder: Path, weights: Path) -> tuple[float, int, str]:
    from app.ui.main_window import MainWindow

    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    assert window.open_folder(folder, weights=str(weights))
    loop = QEventLoop()
    window.segmentation.modelChanged.connect(lambda _m: loop.quit())
    window.segmentation.modelFailed.connect(lambda e: sys.exit(f"model failed: {e}"))
    loop.exec()
    runs_on = window.device_label.text()
    window.segmentation.jobFinished.connect(lambda *_a: loop.quit())
    started = time.perf_counter()
    window.auto_segment_all()
    loop.exec()
    elapsed = time.perf_counter() - started
    instances = len(window.document.store.instances())
    window.close()
    window.deleteLater()
    return elapsed, instances, runs_on


def _headless_run(paths: list[Path], weights: Path, batch: int) -> tuple[float, int]:
    from maskrcnn_core import Predictor

    predictor = Predictor(weights, device="cpu", batch_size=batch)
    started = time.perf_counter()
    detections = sum(
        len(p.scores) for i in range(0, len(paths), batch) for p in predictor.predict(paths[i : i + batch])
    )
    return time.perf_counter() - started, detections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=DEMO_MODEL)
    args = parser.parse_args()

    import shutil

    from app.project.demo import DEMO_SEED
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="app-throughput-") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")
        images = (
            generate_synthetic_dataset(
                Path(tmp) / "data", num_images=args.images, seed=DEMO_SEED, image_size=(384, 512)
            ).parent
            / "images"
        )
        paths = sorted(images.glob("*.png"))
        app_times, headless_times, batched_times = [], [], []
        for round_ in range(args.rounds):
            folder = Path(tmp) / f"round{round_}"
            shutil.copytree(images, folder)
            elapsed, instances, runs_on = _app_run(folder, args.weights)
            app_times.append(elapsed)
            app.processEvents()
            headless, detections = _headless_run(paths, args.weights, 1)
            headless_times.append(headless)
            batched, _ = _headless_run(paths, args.weights, 2)
            batched_times.append(batched)
            print(
                f"round {round_ + 1}: app {elapsed:.2f} s ({instances} instances stored), "
                f"headless {headless:.2f} s one image a call ({detections} detections), "
                f"{batched:.2f} s two a call",
                flush=True,
            )
    app_best, headless_best = min(app_times), min(headless_times)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.images} images 384x512, "
        f"{args.weights.name}, {runs_on}"
    )
    batched_best = min(batched_times)
    print(
        f"app {len(paths) / app_best:.1f} images/s, headless {len(paths) / headless_best:.1f} images/s "
        f"(one image a call), {len(paths) / batched_best:.1f} images/s (two a call, as the app calls): "
        f"throughput ratio app/headless {headless_best / app_best:.2f}, against the batched loop "
        f"{batched_best / app_best:.2f} (target >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
