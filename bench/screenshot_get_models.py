"""Save docs/screenshots/get_models.png: Model ▸ Get models… mid-download, served slowly from a local HTTP
server (no internet needed). Run it under Xvfb, then look at it:

    xvfb-run -a -s "-screen 0 1500x900x24" .venv/bin/python bench/screenshot_get_models.py
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)

tmp = scratch_folder("shot-get-models-")
os.environ["TORCH_HOME"] = str(tmp / "torch")
from weights_server import WeightsServer  # noqa: E402

served = tmp / "served"
served.mkdir()
# a stand-in with the real v2 file's name (never completes: the shot is taken mid-download)
(served / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth").write_bytes(os.urandom(40 * 1024 * 1024))
server = WeightsServer(served, delay_per_chunk=0.03)
os.environ["MASKRCNN_WEIGHTS_URL"] = server.url
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.ui.get_models_dialog import GetModelsDialog  # noqa: E402

app = QApplication([])
dialog = GetModelsDialog(None)
dialog.show()
dialog.select("coco-v2")
dialog.download_selected()


def shoot():
    out = ROOT / "docs" / "screenshots" / "get_models.png"
    dialog.grab().save(str(out))
    print("saved", out, dialog.progress.value(), dialog.progress.maximum(), dialog.message.text())
    dialog.cancel_download()
    QTimer.singleShot(500, app.quit)


QTimer.singleShot(5000, shoot)
app.exec()
server.close()
