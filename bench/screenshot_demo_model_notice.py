"""xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_demo_model_notice.py

Screenshot: the demo project opened with the bundled demo model, its notice in the status bar and the
Model menu's entry for the active model open."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)

tmp = str(scratch_folder("shot-demo-notice-"))
os.environ["XDG_DATA_HOME"] = tmp + "/data"
os.environ["XDG_CACHE_HOME"] = tmp + "/cache"

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.project.demo import demo_folder, seed_demo_project  # noqa: E402
from app.project.model_sources import DEMO_MODEL  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402

app = QApplication(sys.argv[:1])
window = MainWindow()
window.resize(1500, 900)
window.show()
folder = demo_folder()
seed_demo_project(folder)
window.open_folder(folder, weights=str(DEMO_MODEL))
out = ROOT / "docs" / "screenshots" / "demo_model_notice.png"


def shoot() -> None:
    if window.segmentation.model is None:
        QTimer.singleShot(200, shoot)
        return
    model_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Model")
    bar = window.menuBar()
    model_action = next(a for a in bar.actions() if a.text() == "&Model")
    model_menu.popup(window.mapToGlobal(bar.actionGeometry(model_action).bottomLeft()))
    model_menu.setActiveAction(window.model_about_menu.menuAction())

    def grab() -> None:
        window.model_about_menu.popup(
            model_menu.mapToGlobal(model_menu.actionGeometry(window.model_about_menu.menuAction()).topRight())
        )
        QTimer.singleShot(500, finish)

    def finish() -> None:
        screen = app.primaryScreen().grabWindow(0)
        screen.copy(window.frameGeometry()).save(str(out))
        print("saved", out, window.model_label.text())
        app.quit()

    QTimer.singleShot(400, grab)


QTimer.singleShot(500, shoot)
app.exec()
