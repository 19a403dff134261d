"""Save docs/screenshots/import_cvat_question.png (the question a CVAT-style COCO file brings) and
export_formats.png (File ▸ Export… with the format list open). Run it under Xvfb, then look at them:

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_formats.py
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from app.ui.dialogs import ask_crowd_as_instances  # noqa: E402
from app.ui.export_dialog import ExportChoices, ExportDialog  # noqa: E402

SHOTS = ROOT / "docs" / "screenshots"
app = QApplication([])


def grab_question() -> None:
    box = QApplication.activeModalWidget()
    assert isinstance(box, QMessageBox)
    box.grab().save(str(SHOTS / "import_cvat_question.png"))
    box.reject()


QTimer.singleShot(300, grab_question)
ask_crowd_as_instances(None, "cvat_export/annotations/instances_default.json")

dialog = ExportDialog(ExportChoices(Path.home() / "exports" / "leaves-yolo", "yolo", "verified"))
dialog.move(40, 40)
dialog.show()


def grab_export() -> None:
    popup = dialog.format_box.view().window()
    region = dialog.frameGeometry().united(popup.frameGeometry()).adjusted(-8, -8, 8, 8)
    shot = app.primaryScreen().grabWindow(0, region.x(), region.y(), region.width(), region.height())
    shot.save(str(SHOTS / "export_formats.png"))
    app.quit()


QTimer.singleShot(300, dialog.format_box.showPopup)
QTimer.singleShot(800, grab_export)
app.exec()
print(json.dumps({"saved": [str(SHOTS / "import_cvat_question.png"), str(SHOTS / "export_formats.png")]}))
