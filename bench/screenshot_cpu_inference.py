"""Save a PNG of the window on the demo with Model ▸ CPU inference open and the status bar saying what runs.

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_cpu_inference.py \
        --out docs/screenshots/cpu_inference.png

The real predictor (the bundled demo model) loads in the worker thread with the app's CPU inference
setting; the whole screen is grabbed, so the open menus are in the picture.
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

from PySide6.QtCore import QEventLoop, QPoint, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "cpu_inference.png")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="shot-cpu-") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")
        from app.project.model_sources import DEMO_MODEL
        from app.ui.main_window import MainWindow
        from maskrcnn_core.data.synthetic import generate_synthetic_dataset

        images = generate_synthetic_dataset(Path(tmp) / "data", num_images=4, seed=0, image_size=(384, 512))
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
        window.auto_segment_image()
        loop.exec()
        model_menu = window.cpu_inference_menu.parentWidget()
        bar = window.menuBar()
        action = next(a for a in bar.actions() if a.menu() is model_menu)
        model_menu.popup(bar.mapToGlobal(bar.actionGeometry(action).bottomLeft()))
        app.processEvents()
        submenu_action = window.cpu_inference_menu.menuAction()
        model_menu.setActiveAction(submenu_action)
        geometry = model_menu.actionGeometry(submenu_action)
        window.cpu_inference_menu.popup(model_menu.mapToGlobal(geometry.topRight() + QPoint(2, 0)))
        QTimer.singleShot(800, loop.quit)
        loop.exec()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        app.primaryScreen().grabWindow(0).copy(0, 0, 1400, 880).save(str(args.out))
        print(f"saved {args.out}: {window.device_label.text()}")
        window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
