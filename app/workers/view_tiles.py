"""The tiles of one large image for the canvas, read off the GUI thread (:mod:`app.project.view_pyramid`).

On open: a pyramid already built for the file as it is now is used at once (its overview is the first
paint); otherwise a quick overview is read where the file allows one (a JPEG at reduced scale, a pyramidal
TIFF's own level) while ``python -m app.project.view_pyramid`` builds the pyramid in a child process, whose
memory and decoding never weigh on the window. Until it is done, level 0 of a region-readable TIFF is
served from the file itself; other levels wait for the pyramid (the canvas draws what it has, coarser).

Tiles are asked for by ``(level, row, col)`` and arrive through ``tileReady``; asking again for what is
pending costs nothing, and :meth:`keep_only` drops the requests the view no longer needs (a pan or zoom
made them moot) before they are decoded. Each read checks the file has not changed since the pyramid was
built: if it has, ``sourceChanged`` fires once and nothing more is served.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from app.project.view_pyramid import (
    OVERVIEW_SIDE,
    PREVIEW_INTERVAL_S,
    TILE_SIZE,
    Pyramid,
    PyramidError,
    fingerprint,
    read_preview,
)
from app.workers.image_loader import rgb_to_qimage
from maskrcnn_core.image_io import ImageReadError, ImageRegions, open_regions, read_overview, reads_in_regions

TileKey = tuple[int, int, int]  # level, row, col


class _Signals(QObject):
    opened = Signal(object)  # _Opened
    tile = Signal(object, object)  # TileKey, QImage | None
    overview = Signal(object, int)  # QImage, generation
    error = Signal(str)


class LargeImageTiles(QObject):
    """Serves the canvas the tiles of one large image; close it when the image is no longer shown."""

    overviewReady = Signal(object)  # QImage: the whole image, reduced (its width / the image's = its scale)
    tileReady = Signal(int, int, int, object)  # level, row, col, QImage
    pyramidReady = Signal()  # every level can be served now
    buildProgress = Signal(int, int)  # bands done, bands in all
    failed = Signal(str)  # the view cannot be built: one line saying why
    sourceChanged = Signal()  # the file changed on disk since the view was built

    def __init__(
        self, source: Path, folder: Path, size: tuple[int, int], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.source = source
        self.folder = folder
        self.size = size
        self.pyramid: Pyramid | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _Signals(self)
        self._signals.tile.connect(self._on_tile)
        self._signals.overview.connect(self._on_overview)
        self._signals.error.connect(self._on_read_error)
        self._signals.opened.connect(self._on_opened)
        self._lock = threading.Lock()
        self._pending: set[TileKey] = set()
        self._wanted: set[TileKey] = set()
        self._regions: ImageRegions | None = None  # level 0 straight from a region-readable file
        self._regions_lock = threading.Lock()
        self._state: list[int] | None = None
        self._process: QProcess | None = None
        self._output = b""
        self._build_error = ""
        self._closed = False
        self._changed = False
        self._generation = 0
        self._quick_overview = False  # the file gave one when opened: no build preview is needed
        self._preview_asked = 0.0

    # ---------------------------------------------------------------------------------------------- life
    def start(self) -> None:
        """Use the pyramid of the file as it is now, or build one (``buildProgress``, then
        ``pyramidReady`` or ``failed``); the overview arrives through ``overviewReady`` either way. The
        file is opened in the pool (parsing a pyramidal TIFF's directories takes a while): nothing here
        waits on it."""
        self._pool.start(_OpenTask(self), priority=2)

    def _on_opened(self, opened: object) -> None:
        assert isinstance(opened, _Opened)
        if self._closed:
            if opened.regions is not None:
                opened.regions.close()
            return
        if opened.error:
            self.failed.emit(opened.error)
            return
        self._state, self._regions, self.pyramid = opened.state, opened.regions, opened.pyramid
        if opened.overview is not None:
            self._quick_overview = True
            self.overviewReady.emit(opened.overview)
        if self.pyramid is not None:
            self.pyramidReady.emit()
        else:
            self._start_build()

    def close(self) -> None:
        """Stop building and reading; what was built stays for the next time."""
        self._closed = True
        with self._lock:
            self._wanted.clear()
        self._pool.clear()
        if self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning:
            self._process.kill()
            self._process.waitForFinished(2000)
        self._pool.waitForDone(5000)
        if self._regions is not None:
            with self._regions_lock:
                self._regions.close()
            self._regions = None

    def wait_for_build(self, timeout_ms: int = 60_000) -> bool:
        """Block until the build process ends (tests and benchmarks)."""
        if self._process is None:
            return True
        return self._process.waitForFinished(timeout_ms)

    # ----------------------------------------------------------------------------------------------- tiles
    def can_serve(self, level: int) -> bool:
        """Whether tiles of ``level`` can be read now."""
        if self._changed or self._closed:
            return False
        return self.pyramid is not None or (level == 0 and self._regions is not None)

    def request(self, level: int, row: int, col: int) -> None:
        """Read one tile; it arrives through ``tileReady`` (nothing when it cannot be served)."""
        key = (level, row, col)
        if not self.can_serve(level):
            return
        with self._lock:
            self._wanted.add(key)
            if key in self._pending:
                return
            self._pending.add(key)
        self._pool.start(_TileTask(self, key))

    def keep_only(self, keys: set[TileKey]) -> None:
        """Forget requests not in ``keys`` that have not been read yet."""
        with self._lock:
            self._wanted = set(keys)

    def read_tile(self, key: TileKey) -> np.ndarray | None:
        """One tile's pixels (any thread); ``None`` when it is no longer wanted or cannot be served."""
        with self._lock:
            if key not in self._wanted or self._closed:
                self._pending.discard(key)
                return None
        if self._state is not None and not _unchanged(self.source, self._state):
            raise _SourceChanged
        level, row, col = key
        pyramid = self.pyramid
        if level == 0 and self._regions is not None:
            height, width = self.size
            x0, y0 = col * TILE_SIZE, row * TILE_SIZE
            with self._regions_lock:
                if self._regions is None:
                    return None
                return np.array(
                    self._regions.read(x0, y0, min(width, x0 + TILE_SIZE), min(height, y0 + TILE_SIZE))
                )
        if pyramid is None:
            return None
        return pyramid.cached_tile(level, row, col)

    # ------------------------------------------------------------------------------------------ internals
    def _read_overview(self, pyramid: Pyramid) -> None:
        self._generation += 1
        self._pool.start(_OverviewTask(self, pyramid, self._generation), priority=1)

    def _start_build(self) -> None:
        process = QProcess(self)
        process.setProgram(sys.executable)
        process.setArguments(["-m", "app.project.view_pyramid", str(self.source), str(self.folder)])
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("OMP_NUM_THREADS", "1")  # one core for the build, the other for the window
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._on_build_output)
        process.finished.connect(self._on_build_finished)
        self._process = process
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        process.start()

    def _on_build_output(self) -> None:
        if self._process is None:
            return
        self._output += bytes(self._process.readAllStandardOutput().data())
        *lines, self._output = self._output.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", errors="replace").strip()
            if text.startswith("progress "):
                done, total = (int(v) for v in text.split()[1:3])
                self.buildProgress.emit(done, total)
                self._ask_for_preview()
            elif text.startswith("error: "):
                self._build_error = text[len("error: ") :]

    def _ask_for_preview(self) -> None:
        """Without a quick overview, show the build's preview (the rows read so far) as it grows."""
        now = time.monotonic()
        if self._quick_overview or self._closed or now - self._preview_asked < PREVIEW_INTERVAL_S:
            return
        self._preview_asked = now
        self._pool.start(_PreviewTask(self, self._generation), priority=1)

    def _on_build_finished(self, exit_code: int, _status: QProcess.ExitStatus) -> None:
        self._on_build_output()
        if self._closed:
            return
        error = self._build_error
        if exit_code != 0 or error:
            self.failed.emit(
                error or f"{self.source.name}: building its view stopped (exit code {exit_code})"
            )
            return
        self.pyramid = Pyramid.open(self.folder, self.source)
        if self.pyramid is None:
            self.failed.emit(f"{self.source.name}: the file changed while its view was being built")
            return
        self._read_overview(self.pyramid)
        self.pyramidReady.emit()

    def _on_tile(self, key: object, image: object) -> None:
        assert isinstance(key, tuple)
        with self._lock:
            self._pending.discard(key)
        if isinstance(image, QImage) and not self._closed:
            self.tileReady.emit(*key, image)

    def _on_overview(self, image: object, generation: int) -> None:
        if isinstance(image, QImage) and not self._closed and generation == self._generation:
            self.overviewReady.emit(image)

    def _on_read_error(self, message: str) -> None:
        if self._closed:
            return
        if message == _SourceChanged.__name__:
            if not self._changed:
                self._changed = True
                self.sourceChanged.emit()
            return
        self.failed.emit(message)


class _SourceChanged(Exception):
    """The file changed on disk since the tiles were built."""


def _unchanged(source: Path, state: list[int]) -> bool:
    try:
        return fingerprint(source) == state
    except OSError:
        return False


class _TileTask(QRunnable):
    def __init__(self, tiles: LargeImageTiles, key: TileKey) -> None:
        super().__init__()
        self._tiles, self._key, self._signals = tiles, key, tiles._signals

    def run(self) -> None:
        try:
            pixels = self._tiles.read_tile(self._key)
        except _SourceChanged:
            self._signals.tile.emit(self._key, None)
            self._signals.error.emit(_SourceChanged.__name__)
            return
        except (PyramidError, ImageReadError, OSError, MemoryError) as exc:
            self._signals.tile.emit(self._key, None)
            self._signals.error.emit(str(exc) or type(exc).__name__)
            return
        self._signals.tile.emit(self._key, None if pixels is None else rgb_to_qimage(pixels))


@dataclass
class _Opened:
    """What opening the file in the pool found."""

    state: list[int] | None = None
    regions: ImageRegions | None = None
    pyramid: Pyramid | None = None
    overview: QImage | None = None
    error: str = ""


class _OpenTask(QRunnable):
    """The file's state, its region reader (a region-readable TIFF), its pyramid when current, and the
    overview: the pyramid's, else a quick one where the file has it."""

    def __init__(self, tiles: LargeImageTiles) -> None:
        super().__init__()
        self._tiles = tiles
        self._signals = tiles._signals

    def run(self) -> None:
        tiles, opened = self._tiles, _Opened()
        try:
            opened.state = fingerprint(tiles.source)
            if reads_in_regions(tiles.source):
                opened.regions = open_regions(tiles.source)
            opened.pyramid = Pyramid.open(tiles.folder, tiles.source)
        except (OSError, ImageReadError) as exc:
            opened.error = str(exc) or type(exc).__name__
            self._signals.opened.emit(opened)
            return
        try:
            if opened.pyramid is not None:
                pixels: np.ndarray | None = opened.pyramid.overview()
            else:
                found = read_overview(tiles.source, OVERVIEW_SIDE)
                pixels = None if found is None else found[0]
        except (PyramidError, ImageReadError, OSError, MemoryError):
            pixels = None  # the overview comes with the pyramid (built again if it is damaged)
            opened.pyramid = None
        opened.overview = None if pixels is None else rgb_to_qimage(pixels)
        self._signals.opened.emit(opened)


class _PreviewTask(QRunnable):
    """The build's preview, as it is now (nothing when there is none yet)."""

    def __init__(self, tiles: LargeImageTiles, generation: int) -> None:
        super().__init__()
        self._signals, self._folder, self._generation = tiles._signals, tiles.folder, generation

    def run(self) -> None:
        pixels = read_preview(self._folder)
        if pixels is not None:
            self._signals.overview.emit(rgb_to_qimage(pixels), self._generation)


class _OverviewTask(QRunnable):
    """The overview of a pyramid just built."""

    def __init__(self, tiles: LargeImageTiles, pyramid: Pyramid, generation: int) -> None:
        super().__init__()
        self._signals, self._pyramid, self._generation = tiles._signals, pyramid, generation

    def run(self) -> None:
        try:
            pixels = self._pyramid.overview()
        except (PyramidError, OSError, MemoryError) as exc:
            self._signals.error.emit(str(exc) or type(exc).__name__)
            return
        self._signals.overview.emit(rgb_to_qimage(pixels), self._generation)
