"""Save PNGs of the window on a 12,000 x 3,000 synthetic scene shown from its view pyramid, segmented tile by
tile by the bundled demo model: the whole image, and a corner at one image pixel per screen pixel.

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_large_image.py \
        --out docs/screenshots/large_image

The whole screen is grabbed (a real window under Xvfb), after the tiles in view have arrived.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from window_wait import settle  # noqa: E402  (bench/window_wait.py, beside this script)
from window_wait import wait_until as wait  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "large_image")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])

    with tempfile.TemporaryDirectory(prefix="shot-large-") as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")
        from app.ui.main_window import MainWindow
        from maskrcnn_core.data.synthetic import generate_large_scene

        generate_large_scene(Path(tmp), height=3000, width=12000, num_objects=220, seed=4)
        window = MainWindow()
        window.resize(1400, 850)
        window.move(0, 0)
        window.show()
        assert window.open_folder(Path(tmp) / "images")
        canvas = window.canvas
        wait(lambda: canvas.large_image() is not None and canvas.large_image().tiles.pyramid is not None)
        wait(lambda: window.segmentation.model is not None)
        finished: list[bool] = []
        window.segmentation.jobFinished.connect(lambda *_a: finished.append(True))
        window.segment_all_action.trigger()
        wait(lambda: bool(finished))
        args.out.mkdir(parents=True, exist_ok=True)
        canvas.fit()
        settle()
        screen = app.primaryScreen()
        screen.grabWindow(0).save(str(args.out / "whole.png"))
        canvas.resetTransform()
        canvas.zoomChanged.emit(canvas.zoom_factor())
        canvas.centerOn(QPointF(10_800, 700))
        item = canvas.large_image()
        settle()
        wait(lambda: not item.tiles._pending)  # noqa: SLF001 - the tiles in view, decoded
        settle()
        screen.grabWindow(0).save(str(args.out / "full_zoom.png"))
        window.close()
    print(f"wrote {args.out}/whole.png and {args.out}/full_zoom.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
