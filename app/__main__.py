"""``maskrcnn-studio [FOLDER] [--weights CKPT] [--demo]`` (also ``python -m app``), and the
``import`` / ``export`` / ``segment`` / ``review`` / ``repair`` commands, which need no display."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn-studio",
        description="Mask R-CNN Studio: open a folder of images, auto-segment it, correct the masks. "
        "Also: 'maskrcnn-studio import FOLDER COCO.json', 'maskrcnn-studio export FOLDER --out FILE', "
        "'maskrcnn-studio segment FOLDER [--weights CKPT] [--batch-size N]', "
        "'maskrcnn-studio review FOLDER [--top N]' (the images to correct next, most uncertain first) and "
        "'maskrcnn-studio repair FOLDER' (a damaged project file).",
    )
    parser.add_argument("folder", nargs="?", type=Path, help="a folder of images to open")
    parser.add_argument("--weights", type=Path, help="a checkpoint to load (remembered in the project)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="generate a folder of synthetic shapes and open it with the bundled demo model",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("import", "export", "segment", "review", "repair"):
        from app.cli import main as cli_main

        return cli_main(argv)
    args = build_parser().parse_args(argv)
    if args.demo and args.folder is not None:
        build_parser().error("--demo opens its own folder; leave FOLDER out")
    return run_gui(args.folder, weights=args.weights, demo=args.demo)


def run_gui(folder: Path | None, *, weights: Path | None = None, demo: bool = False) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.project.model_sources import bundled_demo_model
    from app.resources import APP_ICON
    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Mask R-CNN Studio")
    app.setWindowIcon(QIcon(str(APP_ICON)))
    window = MainWindow()
    window.show()
    if demo:
        from app.project.demo import demo_folder, seed_demo_project

        model = bundled_demo_model()
        folder = demo_folder()
        try:
            seed_demo_project(folder)
        except (ValueError, OSError) as exc:  # opening the folder below says why, once
            window.statusBar().showMessage(f"Demo ground truth not imported: {exc}", 10_000)
        if window.open_folder(folder, weights=str(model) if model else None):
            _segment_all_once_loaded(window)
    elif folder is not None:
        window.open_folder(folder, weights=str(weights) if weights else None)
    else:
        window.start_without_folder()
    return app.exec()


def _segment_all_once_loaded(window) -> None:  # noqa: ANN001 - MainWindow, imported lazily
    """In the demo, start "Auto-segment all" as soon as the model is ready (nothing to click)."""
    seg = window.segmentation
    if seg is None:
        return

    def start(_model: object) -> None:
        seg.modelChanged.disconnect(start)
        window.auto_segment_all()

    seg.modelChanged.connect(start)


if __name__ == "__main__":
    sys.exit(main())
