"""Many void Qt calls in one process must not exhaust None's reference count.

PySide6 6.12.0 on Python 3.11 drops a reference to None on every void Qt call, so a long session aborts with
"none_dealloc"; the pinned 6.11.3 does not (see pyproject.toml). This guards the pin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_long_session_of_void_qt_calls_does_not_abort():
    code = (
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "qt = QApplication([])\n"
        "label = QLabel()\n"
        "for i in range(200_000):\n"
        "    label.setText('x')\n"
        "    qt.processEvents()\n"
        "print('alive')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert run.stdout.strip() == "alive", run.stderr[-2000:]
