"""Decode images off the GUI thread: full images for the canvas, small thumbnails for the browser.

Runs on a ``QThreadPool``; results come back through queued signals. A file that cannot be used (missing,
zero-byte, corrupt, unsupported, too large) gives an error message instead of an image, never an
exception on the GUI thread. ``QImage`` (unlike ``QPixmap``) may be built outside the GUI thread.

A large image (:func:`app.project.view_pyramid.shown_tiled`) is never decoded whole here: the canvas gets a
:class:`LargeImageFile` instead and shows it from its view pyramid (:mod:`app.workers.view_tiles`), and its
thumbnail comes from a reduced read where the file allows one, else a grey stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from app.project.view_pyramid import shown_tiled
from maskrcnn_core.image_io import (
    TILED_MAX_PIXELS,
    ImageReadError,
    image_size,
    read_image,
    read_overview,
)

THUMBNAIL_SIZE = 96
_STAND_IN_GREY = 96


@dataclass(frozen=True)
class LargeImageFile:
    """What the loader gives the canvas for a large image instead of its pixels."""

    path: Path
    size: tuple[int, int]  # (H, W)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An ``(H, W, 3)`` uint8 RGB array as a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def read_thumbnail(path: Path, size: int = THUMBNAIL_SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """A thumbnail (longest side ``size``) as ``(h, w, 3)`` uint8 RGB, and the file's full ``(H, W)``.

    The size check reads only the header, so a file past the tiled paths' limit is refused before any
    decoding; JPEGs are decoded at reduced scale (``draft``), so a 12-megapixel photo costs a few
    milliseconds; a large image is never decoded whole (see the module's docstring).
    Raises ``ImageReadError`` (a ``ValueError``) with a message saying what is wrong with the file.
    """
    # raises ImageReadError for unreadable / unsupported / too large for even the tiled view
    full_size = image_size(path, max_pixels=TILED_MAX_PIXELS)
    if shown_tiled(full_size):
        found = read_overview(path, size)
        if found is not None:
            return found[0], full_size
        height, width = full_size
        scale = size / max(full_size)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)), 3)
        return np.full(shape, _STAND_IN_GREY, dtype=np.uint8), full_size
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(opened)
            image.thumbnail((size, size))
            thumb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path.name}: cannot decode the image ({exc})") from None
    return thumb, full_size


class _Signals(QObject):
    imageLoaded = Signal(int, object, str)  # image id, QImage, LargeImageFile or None, error ("" when fine)
    thumbnailLoaded = Signal(int, object, object, str)  # image id, QImage or None, (H, W) or None, error


class _FullTask(QRunnable):
    def __init__(self, signals: _Signals, image_id: int, path: Path) -> None:
        super().__init__()
        self._signals, self._image_id, self._path = signals, image_id, path

    def run(self) -> None:
        try:
            size = image_size(self._path, max_pixels=TILED_MAX_PIXELS)
            if shown_tiled(size):
                self._signals.imageLoaded.emit(self._image_id, LargeImageFile(self._path, size), "")
                return
            image = rgb_to_qimage(read_image(self._path))
        except (ImageReadError, OSError, ValueError, MemoryError) as exc:
            self._signals.imageLoaded.emit(self._image_id, None, str(exc) or type(exc).__name__)
            return
        self._signals.imageLoaded.emit(self._image_id, image, "")


class _ThumbnailTask(QRunnable):
    def __init__(self, signals: _Signals, image_id: int, path: Path) -> None:
        super().__init__()
        self._signals, self._image_id, self._path = signals, image_id, path

    def run(self) -> None:
        try:
            thumb, size = read_thumbnail(self._path)
        except (ImageReadError, OSError, ValueError, MemoryError) as exc:
            self._signals.thumbnailLoaded.emit(self._image_id, None, None, str(exc) or type(exc).__name__)
            return
        self._signals.thumbnailLoaded.emit(self._image_id, rgb_to_qimage(thumb), size, "")


class ImageLoader(QObject):
    """Loads images in a thread pool. Connect to ``imageLoaded`` / ``thumbnailLoaded``."""

    imageLoaded = Signal(int, object, str)
    thumbnailLoaded = Signal(int, object, object, str)

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._signals = _Signals(self)
        self._signals.imageLoaded.connect(self.imageLoaded)
        self._signals.thumbnailLoaded.connect(self._on_thumbnail)
        self._pending_thumbnails: set[int] = set()

    def load_image(self, image_id: int, path: Path) -> None:
        """Decode the full image; the canvas asks for it first, ahead of queued thumbnails."""
        self._pool.start(_FullTask(self._signals, image_id, path), priority=1)

    def load_thumbnail(self, image_id: int, path: Path) -> None:
        if image_id in self._pending_thumbnails:
            return
        self._pending_thumbnails.add(image_id)
        self._pool.start(_ThumbnailTask(self._signals, image_id, path))

    def wait(self, timeout_ms: int = 5000) -> bool:
        """Let queued work finish (for shutdown and tests)."""
        self._pool.clear()
        return self._pool.waitForDone(timeout_ms)

    def _on_thumbnail(self, image_id: int, image: object, size: object, error: str) -> None:
        self._pending_thumbnails.discard(image_id)
        self.thumbnailLoaded.emit(image_id, image, size, error)
