"""Waiting on a real window in the benchmarks and screenshot scripts: the event loop turns while they wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtWidgets import QApplication


def wait_until(condition: Callable[[], object], timeout: float = 600.0, poll: float = 0.002) -> None:
    """Process events until ``condition()`` is true; ``TimeoutError`` after ``timeout`` seconds."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting after {timeout:.0f} s")
        app.processEvents()
        time.sleep(poll)


def settle(seconds: float = 1.0) -> None:
    """Process events for ``seconds`` (repaints and queued results land before a screenshot)."""
    app = QApplication.instance()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
