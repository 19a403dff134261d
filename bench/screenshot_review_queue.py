"""Save a PNG of the window after Review next: the list sorted most uncertain first, the image the queue
picked, its unsure predictions dotted and captioned, the status bar saying why.

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_review_queue.py \
        --out docs/screenshots/review_queue.png

The bundled demo model (circle, square, triangle, ring) segments synthetic images that also hold shapes it
never saw (hexagon, star), with its real uncertainty; Auto-segment all, then Review next, as a person would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "review_queue.png")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="shot-review-") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")
        from app.project.model_sources import DEMO_MODEL
        from app.ui.main_window import MainWindow
        from maskrcnn_core.data.synthetic import generate_synthetic_dataset

        classes = ("circle", "square", "triangle", "ring", "hexagon", "star")
        images = generate_synthetic_dataset(
            Path(tmp) / "data", num_images=10, seed=4, image_size=(384, 512), class_names=classes
        )
        folder = Path(tmp) / "photos"
        shutil.copytree(images.parent / "images", folder)
        window = MainWindow()
        window.resize(1400, 850)
        window.move(0, 0)
        window.show()
        assert window.open_folder(folder, weights=str(DEMO_MODEL))
        loop = QEventLoop()
        window.segmentation.modelChanged.connect(lambda _m: loop.quit())
        loop.exec()
        window.segmentation.jobFinished.connect(lambda *_a: loop.quit())
        window.auto_segment_all()
        loop.exec()
        window.image_panel.uncertain_first.setChecked(True)
        window.review_next()
        message = window.statusBar().currentMessage()
        QTimer.singleShot(1500, loop.quit)  # the picked image decodes and its overlay draws
        loop.exec()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        app.primaryScreen().grabWindow(0).copy(0, 0, 1400, 880).save(str(args.out))
        print(f"saved {args.out}: {message}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
