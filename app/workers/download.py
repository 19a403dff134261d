"""Download pretrained weights on a worker thread (Model ▸ Get models…); the GUI thread never waits.

One ``WeightsDownload`` per download: ``start()`` it, ``cancel()`` it from the GUI thread, and hear how it
goes through its signals (queued to the GUI thread). Progress is reported at most every ~100 ms.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QThread, Signal

from maskrcnn_core import downloads
from maskrcnn_core.cancel import CancelToken

PROGRESS_INTERVAL_S = 0.1


class WeightsDownload(QThread):
    """Downloads one catalogue entry into the cache; ends with exactly one of downloaded, failed or
    cancelled."""

    progress = Signal(int, int)  # bytes so far, total bytes (0 when unknown)
    downloaded = Signal(str)  # the file in the cache
    failed = Signal(str)  # one-line message
    cancelled = Signal()

    def __init__(self, weights: downloads.PretrainedWeights, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.weights = weights
        self._cancel = CancelToken()
        self._last_report = 0.0

    def cancel(self) -> None:
        self._cancel.cancel()

    def run(self) -> None:
        try:
            path = downloads.download(self.weights, progress=self._report, cancel=self._cancel)
        except downloads.DownloadCancelled:
            self.cancelled.emit()
        except downloads.DownloadError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - any surprise is a message in the dialog, not a crash
            self.failed.emit(f"download of {self.weights.filename} failed: {type(exc).__name__}: {exc}")
        else:
            self.downloaded.emit(str(path))

    def _report(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_report >= PROGRESS_INTERVAL_S or (total and done >= total):
            self._last_report = now
            self.progress.emit(done, total)
