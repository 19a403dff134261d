"""The view pyramid of a large image: tiles at full resolution and at every halving down to an overview,
cached on disk in the project folder, so that the window decodes only the tiles it shows.

An image with a side over :data:`TILED_VIEW_MIN_SIDE` is shown this way (:func:`shown_tiled`). Level ``k``
is the image at ``1 / 2**k`` of its size, cut into :data:`TILE_SIZE` tiles; the top level, whose longer side
is at most :data:`OVERVIEW_SIDE`, is one image (the overview). Level 0 is read from the file itself where
the file allows region reads (a tiled or striped TIFF); otherwise (a JPEG or PNG, decoded whole once) its
tiles are cached too, losslessly. Reduced levels are cached as JPEG: they are only ever seen zoomed out.

A pyramid belongs to one state of its file: its manifest records the file's size and modification time,
and a pyramid whose file changed since is stale and rebuilt, never shown. Building writes into a
temporary folder renamed into place when complete, so a killed build leaves nothing that looks whole.

While a build runs it keeps a *preview* beside the pyramid's folder (:func:`read_preview`): the overview of
the rows read so far, for a file with no quick overview of its own (a flat TIFF, a PNG).

No Qt: the window builds in a child process (``python -m app.project.view_pyramid SOURCE FOLDER``, which
prints ``progress DONE TOTAL`` lines, then ``done`` or ``error: MESSAGE``), so decoding a 400-megapixel
JPEG never weighs on the window's memory or its GUI thread.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskrcnn_core.image_io import (
    TILED_MAX_PIXELS,
    ImageReadError,
    ImageRegions,
    assemble_region,
    image_size,
    open_regions,
    reads_in_regions,
)
from maskrcnn_core.system_memory import available_memory

#: an image with a side longer than this is shown from its view pyramid, a tile at a time
TILED_VIEW_MIN_SIDE = 8000
#: the side of a pyramid tile, in the pixels of its level
TILE_SIZE = 512
#: the longer side of the top level (the overview), at most
OVERVIEW_SIDE = 2048
#: the folder of the project directory that holds the pyramids
PYRAMIDS_DIR = "view-pyramids"
_MANIFEST = "manifest.json"
_OVERVIEW = "overview.png"
_FORMAT_VERSION = 1
_REDUCED_JPEG_QUALITY = 90
#: a build writes its preview (the overview of the rows read so far) at most this often
PREVIEW_INTERVAL_S = 1.0
_PREVIEW_GREY = 40  # the canvas's background: rows not read yet do not show as an image
# Decoding a file whole holds its RGB pixels plus the decoder's own copy while converting.
_FULL_DECODE_COPIES = 2


class PyramidError(ValueError):
    """A pyramid that cannot be built (unreadable file, not enough memory) or read (damaged cache)."""


def shown_tiled(size: tuple[int, int]) -> bool:
    """Whether an ``(H, W)`` image is shown from a view pyramid rather than decoded whole."""
    return max(size) > TILED_VIEW_MIN_SIDE


def level_count(size: tuple[int, int]) -> int:
    """The number of levels of an ``(H, W)`` image's pyramid: the top one is the first at most
    :data:`OVERVIEW_SIDE` on its longer side."""
    return max(0, math.ceil(math.log2(max(size) / OVERVIEW_SIDE))) + 1


def level_size(size: tuple[int, int], level: int) -> tuple[int, int]:
    """``(H, W)`` of ``level`` (each level halves the one below, rounding up)."""
    height, width = size
    for _ in range(level):
        height, width = -(-height // 2), -(-width // 2)
    return height, width


def pyramid_folder(project_dir: Path, source: Path) -> Path:
    """Where the pyramid of ``source`` lives under a project directory (one folder per file path)."""
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:16]
    return project_dir / PYRAMIDS_DIR / digest


def fingerprint(source: Path) -> list[int]:
    """What says the file is unchanged: its size and modification time (ns). Raises ``OSError``."""
    stat = source.stat()
    return [stat.st_size, stat.st_mtime_ns]


@dataclass(frozen=True)
class Pyramid:
    """A complete pyramid on disk, for the file state it was built from."""

    folder: Path
    source: Path
    size: tuple[int, int]  # (H, W) of the full image
    levels: int
    level0_cached: bool  # False: level 0 is read from the file itself
    built_from: list[int]  # the file's fingerprint when the pyramid was built

    @classmethod
    def open(cls, folder: Path, source: Path) -> Pyramid | None:
        """The pyramid in ``folder`` when it is complete and of the file as it is now; ``None`` when there
        is none, it is damaged, or the file changed since it was built (stale)."""
        try:
            manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
            state = fingerprint(source)
            if manifest.get("version") != _FORMAT_VERSION or manifest.get("fingerprint") != state:
                return None
            size = (int(manifest["height"]), int(manifest["width"]))
            levels, level0_cached = int(manifest["levels"]), bool(manifest["level0_cached"])
            pyramid = cls(folder, source, size, levels, level0_cached, state)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pyramid.levels != level_count(size) or not (folder / _OVERVIEW).is_file():
            return None
        return pyramid

    def is_current(self) -> bool:
        """Whether the file is still as it was when the pyramid was built."""
        try:
            return fingerprint(self.source) == self.built_from
        except OSError:
            return False

    def overview(self) -> np.ndarray:
        """The top level, whole, as ``(h, w, 3)`` uint8 RGB. Raises :class:`PyramidError`."""
        return _read_png_or_jpeg(self.folder / _OVERVIEW)

    def cached_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """A tile of a cached level (1 and up; 0 when ``level0_cached``). Raises :class:`PyramidError`."""
        return _read_png_or_jpeg(self.folder / tile_name(level, row, col, cached_level0=self.level0_cached))


class PyramidRegions(ImageRegions):
    """A large image read from its view pyramid rather than its file: level 0's cached tiles for regions,
    a reduced level for a reduced copy. For a file that cannot be read a region at a time (a JPEG, a PNG),
    inference reads these instead of decoding the whole file: the tiles hold the very pixels a full read
    gives (the build decodes with :func:`maskrcnn_core.image_io.read_image`, and level 0 is lossless)."""

    def __init__(self, pyramid: Pyramid) -> None:
        self.pyramid = pyramid
        self.path = str(pyramid.source)
        self.size = pyramid.size

    @classmethod
    def find(cls, project_dir: Path, source: Path) -> PyramidRegions | None:
        """The regions of ``source`` from its pyramid under ``project_dir`` when one is built, current and
        holds level 0 (a region-readable TIFF is better read from the file itself); else ``None``."""
        pyramid = Pyramid.open(pyramid_folder(project_dir, source), source)
        return cls(pyramid) if pyramid is not None and pyramid.level0_cached else None

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self._read_level(0, x0, y0, x1, y1)

    def read_reduced(self, longest_side: int) -> tuple[np.ndarray, float]:
        height, width = self.size
        if longest_side >= max(height, width):
            return super().read_reduced(longest_side)
        # the coarsest level still at least as large as asked for, then reduced by area
        level = 0
        while level + 1 < self.pyramid.levels and max(level_size(self.size, level + 1)) >= longest_side:
            level += 1
        level_height, level_width = level_size(self.size, level)
        if level == self.pyramid.levels - 1:
            pixels = self.pyramid.overview()
        else:
            pixels = self._read_level(level, 0, 0, level_width, level_height)
        scale = longest_side / max(height, width)
        out = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(pixels, out, interpolation=cv2.INTER_AREA), out[0] / width

    def _read_level(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        try:
            if level == self.pyramid.levels - 1:  # the top level is one image
                overview = self.pyramid.overview()
                return assemble_region(
                    (x0, y0, x1, y1),
                    level_size(self.size, level),
                    overview.shape[:2],
                    lambda _r, _c: overview,
                )
            return assemble_region(
                (x0, y0, x1, y1),
                level_size(self.size, level),
                (TILE_SIZE, TILE_SIZE),
                lambda row, col: self.pyramid.cached_tile(level, row, col),
            )
        except PyramidError as exc:
            raise ImageReadError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        """Nothing to release: each read opens the tiles it needs."""


def tile_name(level: int, row: int, col: int, *, cached_level0: bool = True) -> str:
    """The file of a tile inside a pyramid folder: level 0 lossless, reduced levels JPEG."""
    return f"{level}/{row}_{col}." + ("png" if level == 0 and cached_level0 else "jpg")


def tile_grid(size: tuple[int, int], level: int) -> tuple[int, int]:
    """``(rows, cols)`` of tiles of ``level``."""
    height, width = level_size(size, level)
    return -(-height // TILE_SIZE), -(-width // TILE_SIZE)


def preview_path(folder: Path) -> Path:
    """Where a build in progress keeps the overview of the rows it has read so far (removed when done)."""
    return folder.with_name(f"{folder.name}.preview.png")


def read_preview(folder: Path) -> np.ndarray | None:
    """The build's preview of ``folder``'s pyramid, or ``None`` when there is none (yet, or any more)."""
    try:
        return _read_png_or_jpeg(preview_path(folder))
    except PyramidError:
        return None


def decode_memory_needed(size: tuple[int, int]) -> int:
    """Bytes a whole decode of an ``(H, W)`` image holds at its peak."""
    return size[0] * size[1] * 3 * _FULL_DECODE_COPIES


def build(
    source: Path,
    folder: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    memory_available: int | None = None,
) -> Pyramid:
    """Build the pyramid of ``source`` into ``folder`` (replacing what is there) and return it.

    ``progress(done, total)`` is called after each band of full-resolution rows. A file that cannot be read
    region by region is decoded whole first: refused with :class:`PyramidError` when that needs more memory
    than ``memory_available`` (default: what the system has available now). Raises :class:`PyramidError`.
    """
    try:
        size = image_size(source, max_pixels=TILED_MAX_PIXELS)
        state = fingerprint(source)
        in_regions = reads_in_regions(source)
    except (ImageReadError, OSError) as exc:
        raise PyramidError(str(exc)) from exc
    if not in_regions:
        needed = decode_memory_needed(size)
        available = available_memory() if memory_available is None else memory_available
        if needed > available:
            raise PyramidError(
                f"{source.name}: showing this {size[1]}x{size[0]} image needs it decoded whole once, about "
                f"{_gigabytes(needed)} of memory, and {_gigabytes(available)} is available; "
                "a tiled TIFF of it is read a tile at a time"
            )
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for stale in folder.parent.glob(f"{folder.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed build
    partial.mkdir(parents=True)
    try:
        try:
            regions = open_regions(source, max_pixels=TILED_MAX_PIXELS)
        except (ImageReadError, MemoryError) as exc:
            reason = (
                str(exc) if isinstance(exc, ImageReadError) else f"{source.name}: out of memory decoding it"
            )
            raise PyramidError(reason) from exc
        with regions:
            if regions.size != size:
                raise PyramidError(f"{source.name}: the file changed while it was being read")
            preview = preview_path(folder)
            _Cascade(partial, size, cached_level0=not in_regions, preview=preview).run(regions, progress)
        manifest = {
            "version": _FORMAT_VERSION,
            "source": str(source),
            "fingerprint": state,
            "height": size[0],
            "width": size[1],
            "levels": level_count(size),
            "level0_cached": not in_regions,
        }
        (partial / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if fingerprint(source) != state:
            raise PyramidError(f"{source.name}: the file changed while its view was being built")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        preview_path(folder).unlink(missing_ok=True)
    pyramid = Pyramid.open(folder, source)
    if pyramid is None:
        raise PyramidError(f"{source.name}: the view built in {folder} cannot be read back")
    return pyramid


class _Cascade:
    """Full-resolution bands of :data:`TILE_SIZE` rows go in at level 0; each level writes its tiles a
    band at a time and hands the band, halved, to the level above, which gathers halves into whole bands.
    Memory: one band per level, never a whole level."""

    def __init__(
        self, folder: Path, size: tuple[int, int], *, cached_level0: bool, preview: Path | None = None
    ) -> None:
        self.folder = folder
        self.preview = preview
        self.preview_rows: list[np.ndarray] = []
        self.preview_written = 0.0
        self.size = size
        self.top = level_count(size) - 1
        self.cached_level0 = cached_level0
        self.pending: dict[int, list[np.ndarray]] = {k: [] for k in range(1, self.top + 1)}
        self.next_row = dict.fromkeys(range(self.top + 1), 0)
        self.overview_rows: list[np.ndarray] = []
        for level in range(0 if cached_level0 else 1, self.top):
            (folder / str(level)).mkdir()

    def run(self, regions: ImageRegions, progress: Callable[[int, int], None] | None) -> None:
        height, width = self.size
        bands = -(-height // TILE_SIZE)
        for band in range(bands):
            y0 = band * TILE_SIZE
            try:
                rows = regions.read(0, y0, width, min(height, y0 + TILE_SIZE))
            except ImageReadError as exc:
                raise PyramidError(str(exc)) from exc
            self._band(0, rows)
            if self.preview is not None:
                self._add_to_preview(rows, last=band == bands - 1)
            if progress is not None:
                progress(band + 1, bands)
        for level in range(1, self.top + 1):  # the last, partial bands, lowest level first
            if self.pending[level]:
                self._band(level, self._take(level, None))

    def _add_to_preview(self, rows: np.ndarray, *, last: bool) -> None:
        """Reduce a full-resolution band to the overview's scale and, at most every
        :data:`PREVIEW_INTERVAL_S`, write what is done so far (the rest grey) for the window to show."""
        assert self.preview is not None
        height, width = level_size(self.size, self.top)
        reduced_height = max(1, round(rows.shape[0] * width / self.size[1]))
        self.preview_rows.append(cv2.resize(rows, (width, reduced_height), interpolation=cv2.INTER_AREA))
        now = time.monotonic()
        if last or now - self.preview_written < PREVIEW_INTERVAL_S:
            return
        self.preview_written = now
        done = np.concatenate(self.preview_rows)[:height]
        image = np.full((height, width, 3), _PREVIEW_GREY, dtype=np.uint8)
        image[: done.shape[0]] = done
        partial = self.preview.with_name(self.preview.name + ".tmp")
        _write(partial, image, extension=".png")
        os.replace(partial, self.preview)

    def _band(self, level: int, rows: np.ndarray) -> None:
        if level == self.top:
            self.overview_rows.append(rows)
            if sum(r.shape[0] for r in self.overview_rows) == level_size(self.size, level)[0]:
                _write(self.folder / _OVERVIEW, np.concatenate(self.overview_rows))
            return
        if level > 0 or self.cached_level0:
            row = self.next_row[level]
            for col in range(-(-rows.shape[1] // TILE_SIZE)):
                tile = rows[:, col * TILE_SIZE : (col + 1) * TILE_SIZE]
                _write(self.folder / tile_name(level, row, col, cached_level0=True), tile)
        self.next_row[level] += 1
        half = cv2.resize(
            rows, (-(-rows.shape[1] // 2), -(-rows.shape[0] // 2)), interpolation=cv2.INTER_AREA
        )
        above = level + 1
        if above == self.top:
            self._band(above, half)
            return
        self.pending[above].append(half)
        if sum(r.shape[0] for r in self.pending[above]) >= TILE_SIZE:
            self._band(above, self._take(above, TILE_SIZE))

    def _take(self, level: int, count: int | None) -> np.ndarray:
        """The first ``count`` pending rows of ``level`` (all of them: ``None``), removed from it."""
        rows = np.concatenate(self.pending[level])
        count = rows.shape[0] if count is None else count
        rest = rows[count:]
        self.pending[level] = [rest] if rest.shape[0] else []
        return rows[:count]


def _write(path: Path, rgb: np.ndarray, extension: str | None = None) -> None:
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    suffix = extension or path.suffix
    if suffix == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # lossless and fast: level 0 is seen pixel for pixel
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, _REDUCED_JPEG_QUALITY]
    ok, data = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise PyramidError(f"cannot encode the view tile {path.name}")
    path.write_bytes(data.tobytes())


def _read_png_or_jpeg(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise PyramidError(f"the view tile {path.name} cannot be read ({exc.strerror})") from exc
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise PyramidError(f"the view tile {path.name} is damaged")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _gigabytes(count: int) -> str:
    return f"{count / (1 << 30):.1f} GB"


def main(argv: list[str] | None = None) -> int:
    """``python -m app.project.view_pyramid SOURCE FOLDER``: build, printing progress lines for the window."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m app.project.view_pyramid SOURCE FOLDER", file=sys.stderr)
        return 2

    def report(done: int, total: int) -> None:
        print(f"progress {done} {total}", flush=True)

    try:
        build(Path(args[0]), Path(args[1]), report)
    except (PyramidError, OSError, MemoryError) as exc:
        message = str(exc) if not isinstance(exc, MemoryError) else "out of memory while building the view"
        print(f"error: {message.splitlines()[0] if message else type(exc).__name__}", flush=True)
        return 1
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
