"""Time from "open a folder of 10,000 images" to the first paint of the image browser (budget: 1 s).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_first_paint.py [--images 10000]

Measured twice: the first open (the project is created and 10,000 rows are inserted in one transaction)
and a reopen. The baseline, measured in the same run, is the naive way: a ``QListWidget`` filled with one
item (and icon) per file, as many annotation tools do; the ratio says how much faster our first paint is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEvent, QObject  # noqa: E402
from PySide6.QtGui import QIcon  # noqa: E402
from PySide6.QtWidgets import QApplication, QListWidget, QListWidgetItem, QWidget  # noqa: E402

BUDGET_S = 1.0


class _FirstPaint(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Paint and self.at is None:
            self.at = time.perf_counter()
        return False


def _wait_for_paint(app: QApplication, probe: _FirstPaint, widget: QWidget) -> None:
    widget.viewport().installEventFilter(probe) if hasattr(widget, "viewport") else widget.installEventFilter(
        probe
    )
    deadline = time.perf_counter() + 30
    while probe.at is None and time.perf_counter() < deadline:
        app.processEvents()


def make_folder(root: Path, n: int) -> Path:
    """``n`` small real PNG files (copies of one synthetic image) in nested folders of 1,000."""
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    source = (
        generate_synthetic_dataset(root / "src", num_images=1, seed=0).parent / "images" / "train_000000.png"
    )
    folder = root / "images"
    for i in range(n):
        sub = folder / f"part{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, sub / f"img_{i:06d}.png")
    return folder


def time_app(app: QApplication, folder: Path) -> float:
    from app.ui.main_window import MainWindow

    window = MainWindow()
    window.resize(1200, 800)
    window.show()
    app.processEvents()
    probe = _FirstPaint()
    start = time.perf_counter()
    if not window.open_folder(folder):
        raise SystemExit("could not open the folder")
    _wait_for_paint(app, probe, window.browser)
    elapsed = probe.at - start
    window.close()
    app.processEvents()
    return elapsed


def time_naive(app: QApplication, folder: Path) -> float:
    start = time.perf_counter()
    widget = QListWidget()
    widget.resize(300, 800)
    for path in sorted(folder.rglob("*.png")):
        widget.addItem(QListWidgetItem(QIcon(str(path)), path.name))  # QIcon(path) defers decoding too
    widget.show()
    probe = _FirstPaint()
    _wait_for_paint(app, probe, widget)
    elapsed = probe.at - start
    widget.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="first-paint-") as tmp:
        import os

        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "xdg")  # recent-folders list stays private
        folder = make_folder(Path(tmp), args.images)
        first = time_app(app, folder)
        again = time_app(app, folder)
        naive = time_naive(app, folder)
    ok = max(first, again) < BUDGET_S
    print(
        f"{args.images} images: first paint {first * 1000:.0f} ms on first open (project created), "
        f"{again * 1000:.0f} ms on reopen; budget {BUDGET_S * 1000:.0f} ms: {'ok' if ok else 'OVER'}"
    )
    print(
        f"baseline (QListWidget, one item per file): {naive * 1000:.0f} ms; "
        f"ratio baseline/ours {naive / max(first, again):.1f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
