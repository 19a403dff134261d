"""Screenshots of the canvas basics on the demo folder (its ground truth imported, so no model is needed):
overlays coloured by category, and the right-click menu open on an instance with its Category submenu.

    XDG_CACHE_HOME=/tmp/c xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_canvas.py

Writes docs/screenshots/colour_by_category.png and docs/screenshots/context_menu.png; look at both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "app")]

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QContextMenuEvent, QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> None:
    app = QApplication(sys.argv)
    from fake_predictor import FakePredictor  # a stand-in model: the demo images shown are verified ones

    from app.project.demo import demo_folder, seed_demo_project
    from app.ui.main_window import MainWindow

    def wait(condition: Callable[[], bool], seconds: float = 8.0) -> None:
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    images = demo_folder()
    seed_demo_project(images)
    predictor = FakePredictor()
    window = MainWindow(predictor_factory=lambda _source: lambda: predictor)
    window.resize(1400, 850)
    window.show()
    weights = OUT.parent.parent / "build" / "fake.pt"
    weights.parent.mkdir(exist_ok=True)
    weights.write_bytes(b"stand-in: the fake predictor ignores it")
    assert window.open_folder(images, weights=str(weights))
    doc, canvas = window.document, window.canvas
    busiest = max(doc.images()[:12], key=lambda image: len(doc.visible_instances(image.id)))
    doc.set_current_image(busiest.id)
    wait(lambda: canvas.has_image() and len(canvas.instance_ids()) == len(doc.visible_instances(busiest.id)))
    window.colour_by_category_action.setChecked(True)
    wait(lambda: False, 0.3)
    window.grab().save(str(OUT / "colour_by_category.png"))

    for target in canvas.instance_ids():  # one whose box centre is on its mask (not a ring's hole)
        x0, y0, x1, y1 = canvas.overlay.drawing(target).overlay.box
        centre = QPointF((x0 + x1) / 2, (y0 + y1) / 2)
        if canvas.instance_at(centre) == target:
            break
    pos, viewport = canvas.mapFromScene(centre), canvas.viewport()
    reason = QContextMenuEvent.Reason.Mouse
    QApplication.sendEvent(viewport, QContextMenuEvent(reason, pos, viewport.mapToGlobal(pos)))
    wait(lambda: QApplication.activePopupWidget() is not None, 3.0)
    menu = QApplication.activePopupWidget()
    menu.setActiveAction(next(a for a in menu.actions() if a.menu() is not None))  # open Category
    wait(lambda: False, 0.5)
    frame = window.frameGeometry()
    QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height()).save(
        str(OUT / "context_menu.png")
    )
    menu.close()
    window.close_project()
    print(f"wrote {OUT / 'colour_by_category.png'} and {OUT / 'context_menu.png'}")


if __name__ == "__main__":
    main()
