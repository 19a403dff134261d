"""`CancelToken`: a thread-safe stop request for long engine work (prediction, training).

Plain threading, no torch: the app's GUI thread creates tokens and hands them to its workers.
"""

from __future__ import annotations

import threading


class CancelToken:
    """Set from any thread; the work checks ``cancelled`` between steps (batches, iterations)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
