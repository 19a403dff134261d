"""Reading images as users have them (any orientation, bit depth or colour mode) as ``(H, W, 3)`` uint8 RGB.

numpy + Pillow only (no torch), so the app's image browser can use :func:`image_size` cheaply; tifffile
reads large tiled and striped TIFFs (BigTIFF included) a region at a time for tiled inference
(:func:`open_regions`), and :func:`read_image_reduced` reads a reduced-resolution copy (JPEG decoded at
1/2, 1/4 or 1/8 scale through Pillow's draft mode, a TIFF band by band) without holding the full image.

Every failure is an :class:`ImageReadError` naming the file and what is wrong with it; Pillow's own
exceptions and its decompression-bomb warning never escape.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

from maskrcnn_core.paths import unreadable_reason

__all__ = [
    "assemble_region",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "TILED_MAX_PIXELS",
    "ImageReadError",
    "ImageRegions",
    "ImageTooLargeError",
    "image_size",
    "open_regions",
    "read_image",
    "read_image_reduced",
    "read_overview",
    "reads_in_regions",
    "to_rgb_uint8",
]

#: Lower-case suffixes of the files the app opens.
#: An animated GIF is read as its first frame, as every multi-frame file is.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

# What Pillow raises on a damaged file, depending on the format and where the damage is (the bomb error
# too: some formats only learn a frame's size while decoding).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    Image.DecompressionBombError,
)

# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Modes holding more than 8 bits per pixel; they are scaled by the range of their values.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


class ImageReadError(ValueError):
    """An image file that cannot be read: missing, empty, not an image, corrupt, or too large."""


class ImageTooLargeError(ImageReadError):
    """An image whose header claims more pixels than the limit of the read asked for."""


#: The largest image (width x height) read by default, full reads and thumbnails alike.
MAX_PIXELS = 100_000_000
#: The largest image the tiled paths serve (:func:`open_regions`, :func:`read_image_reduced`): they never
#: hold a full-resolution float copy, and a tiled TIFF is never decoded whole.
TILED_MAX_PIXELS = 1_000_000_000


def read_image(path: str | os.PathLike, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The upright image as an ``(H, W, 3)`` uint8 RGB array (writable, C-contiguous).

    - EXIF orientation is applied (the same transposes as ``PIL.ImageOps.exif_transpose``).
    - Grayscale, palette, 1-bit, CMYK, YCbCr and LAB are converted to RGB; alpha is dropped.
    - 16-bit and 32-bit integer and float images (16-bit grayscale PNG/TIFF, float TIFF) are scaled
      linearly from their own ``[min, max]`` to ``[0, 255]`` (a constant image becomes 0). 16-bit RGB
      files are reduced to 8 bits by Pillow itself (value / 257, over the full 16-bit range).
    - Multi-frame files (TIFF stacks, animations) give their first frame.

    ``max_pixels`` (``None``: no limit of ours) is checked from the header before anything is decoded;
    Pillow's decompression-bomb limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``) applies in any case.
    Raises :class:`ImageReadError`.
    """
    path = Path(path)
    with warnings.catch_warnings():
        # Pillow warns above Image.MAX_IMAGE_PIXELS (89 M pixels); max_pixels is the limit that counts.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            _check_pixels(path, *im.size, max_pixels)
            return _decode_upright(im, path)


def image_size(path: str | os.PathLike, *, max_pixels: int | None = TILED_MAX_PIXELS) -> tuple[int, int]:
    """``(H, W)`` of the upright image (after EXIF orientation), read from the file's header only.

    Agrees with ``read_image(path).shape[:2]``. Raises :class:`ImageReadError` as :func:`read_image`
    does, except that a corrupt or truncated body goes unnoticed. ``max_pixels`` is the limit checked
    (by default what the tiled paths serve, so that importing, exporting and listing a large image work;
    ``None``: Pillow's own decompression-bomb limit only).
    """
    path = Path(path)
    with warnings.catch_warnings(), _pillow_limit(max_pixels):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            width, height = im.size
            _check_pixels(path, width, height, max_pixels)
            if _orientation(im) in (5, 6, 7, 8):  # a quarter turn swaps the sides
                width, height = height, width
            return height, width


class ImageRegions:
    """An image read a rectangle at a time: ``size`` ``(H, W)``, ``read(x0, y0, x1, y1)`` -> ``(h, w, 3)``
    uint8 RGB. This base class holds the whole image in memory (formats that cannot be read in parts);
    :func:`open_regions` returns a TIFF reader that decodes only the tiles or strips a region needs."""

    def __init__(self, image: np.ndarray, path: str | None = None) -> None:
        self._image = image
        self.path = path
        self.size: tuple[int, int] = (int(image.shape[0]), int(image.shape[1]))

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        _check_region(self.size, x0, y0, x1, y1)
        return self._image[y0:y1, x0:x1]

    def read_reduced(self, longest_side: int) -> tuple[np.ndarray, float]:
        """The whole image with its longer side about ``longest_side`` (never upscaled) and its scale, read
        a band of about 512 rows at a time (a subclass with reduced copies of its own may use them)."""
        height, width = self.size
        scale = min(1.0, longest_side / max(height, width))
        out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
        if scale == 1.0:
            return np.array(self.read(0, 0, width, height)), 1.0
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        band = max(1, int(np.ceil(512 * scale)))  # output rows per band: about 512 input rows
        for oy0 in range(0, out_h, band):
            oy1 = min(out_h, oy0 + band)
            y0, y1 = int(oy0 / scale), min(height, int(np.ceil(oy1 / scale)))
            rows = self.read(0, y0, width, y1)
            out[oy0:oy1] = cv2.resize(rows, (out_w, oy1 - oy0), interpolation=cv2.INTER_AREA)
        return out, out_w / width

    def close(self) -> None:
        self._image = np.zeros((0, 0, 3), dtype=np.uint8)

    def __enter__(self) -> ImageRegions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_regions(path: str | os.PathLike, *, max_pixels: int | None = TILED_MAX_PIXELS) -> ImageRegions:
    """The image at ``path`` for region reads (close it, or use it as a context manager).

    A TIFF whose first page is 8-bit gray, RGB or RGBA, stored in tiles or strips (BigTIFF too), is read
    through tifffile: only the tiles a region covers are decoded. Any other file is read whole (as
    :func:`read_image`, the same pixels) with ``max_pixels`` as the limit. Raises :class:`ImageReadError`.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        regions = _TiffRegions.open(path, max_pixels)
        if regions is not None:
            return regions
    with _pillow_limit(max_pixels):
        return ImageRegions(read_image(path, max_pixels=max_pixels), str(path))


def read_image_reduced(
    path: str | os.PathLike, longest_side: int, *, max_pixels: int | None = TILED_MAX_PIXELS
) -> tuple[np.ndarray, float]:
    """A copy of the image whose longer side is about ``longest_side`` (never upscaled), and its scale
    (reduced size / full size), read without decoding the full image where the format allows: a JPEG
    through Pillow's draft mode (decoded at 1/2, 1/4 or 1/8), a TIFF :func:`open_regions` reads band by
    band. Other formats are decoded whole, then reduced. Raises :class:`ImageReadError`."""
    if longest_side < 1:
        raise ValueError(f"longest_side must be at least 1, got {longest_side}")
    path = Path(path)
    with warnings.catch_warnings(), _pillow_limit(max_pixels):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            if im.format == "JPEG":
                _check_pixels(path, *im.size, max_pixels)
                full_h, full_w = image_size(path)
                ratio = max(im.size) / longest_side
                if ratio >= 2:
                    im.draft("RGB", (int(im.size[0] / ratio), int(im.size[1] / ratio)))
                return _reduce(_decode_upright(im, path), (full_h, full_w), longest_side)
    with open_regions(path, max_pixels=max_pixels) as regions:
        return regions.read_reduced(longest_side)


def _decode_upright(im: Image.Image, path: Path) -> np.ndarray:
    """Decode an opened image (at its draft scale, if one was set) as upright ``(H, W, 3)`` uint8 RGB."""
    orientation = _orientation(im)
    try:
        im.load()
    except _DECODE_ERRORS as exc:
        raise ImageReadError(f"{path}: the file is corrupt or truncated ({exc})") from exc
    upright = im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im
    return _to_rgb_array(upright, path)


def _reduce(image: np.ndarray, full_size: tuple[int, int], longest_side: int) -> tuple[np.ndarray, float]:
    """``image`` (maybe already reduced by a draft decode of a ``full_size`` image) brought to
    ``longest_side``; the scale is relative to ``full_size``."""
    height, width = image.shape[:2]
    scale = min(1.0, longest_side / max(full_size))
    out_w, out_h = max(1, round(full_size[1] * scale)), max(1, round(full_size[0] * scale))
    if (out_h, out_w) != (height, width):
        image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image), out_w / full_size[1]


class _TiffRegions(ImageRegions):
    """A tiled or striped 8-bit TIFF (or 16-bit grayscale) read through tifffile, decoding only the
    segments a region needs. 16-bit values are stretched from the whole image's ``[min, max]`` to 8 bits,
    as a full read does: the range is found once, the first time a region is read, by one pass over the
    segments that holds one segment at a time."""

    def __init__(self, tif, page, path: Path) -> None:  # noqa: ANN001 - tifffile's objects
        self._tif = tif
        self._page = page
        self.path = str(path)
        self.size = (int(page.imagelength), int(page.imagewidth))
        self._segment = (int(page.chunks[0]), int(page.chunks[1]))
        self._grid = (int(page.chunked[0]), int(page.chunked[1]))
        self._samples = int(page.samplesperpixel)
        self._range: tuple[float, float] | None = None  # a 16-bit image's [min, max]

    @classmethod
    def open(cls, path: Path, max_pixels: int | None) -> _TiffRegions | None:
        """The reader, or ``None`` for a TIFF whose layout only a full read handles (Pillow's)."""
        import tifffile

        reason = unreadable_reason(path)
        if reason is not None:
            raise ImageReadError(f"{path}: {reason}")
        try:
            tif = tifffile.TiffFile(path)
        except FileNotFoundError:
            raise ImageReadError(f"{path}: no such file") from None
        except (tifffile.TiffFileError, *_DECODE_ERRORS) as exc:
            raise ImageReadError(f"{path}: not a TIFF file, or its header is corrupt ({exc})") from exc
        try:
            if not tif.pages:
                raise ImageReadError(f"{path}: the TIFF holds no image")
            page = tif.pages.first
            _check_pixels(path, int(page.imagewidth), int(page.imagelength), max_pixels)
            if not _region_readable(page):
                tif.close()
                return None
        except BaseException:
            tif.close()
            raise
        return cls(tif, page, path)

    def reduced_level(self, longest_side: int) -> ImageRegions | None:
        """The file's own reduced-resolution copy (a pyramidal TIFF's level) whose longer side is the
        smallest still at least ``longest_side``, for region reads; ``None`` when the file has none. It
        shares this reader's file: use it while this one is open."""
        try:
            levels = self._tif.series[0].levels[1:] if self._tif.series else []
        except Exception:  # noqa: BLE001 - tifffile parses series lazily and raises many kinds on odd files
            return None
        best = None
        for level in levels:
            page = level.pages[0] if level.pages else None
            if page is None or not _region_readable(page):
                continue
            side = max(int(page.imagelength), int(page.imagewidth))
            if side >= longest_side and (best is None or side < max(best.size)):
                best = _TiffRegions(self._tif, page, Path(self.path or ""))
        return best

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        page, cols = self._page, self._grid[1]
        # an empty segment is zeros, as the TIFF specification says
        out = assemble_region(
            (x0, y0, x1, y1),
            self.size,
            self._segment,
            lambda r, c: self._decode(r * cols + c),
            self._samples,
            page.dtype,
        )
        if page.dtype == np.uint16:
            out = _stretch_to_uint8(out, self._value_range())
        elif page.photometric == 0:  # min-is-white
            np.subtract(255, out, out=out)
        if self._samples == 1:
            return np.repeat(out, 3, axis=2)
        return np.ascontiguousarray(out[:, :, :3])

    def _decode(self, index: int) -> np.ndarray | None:
        """Segment ``index`` as ``(h, w, samples)``, or ``None`` for an empty one."""
        page, handle = self._page, self._tif.filehandle
        try:
            handle.seek(page.dataoffsets[index])
            data = handle.read(page.databytecounts[index])
            segment = page.decode(data or None, index, jpegtables=page.jpegtables)[0]
        except Exception as exc:  # tifffile and its codecs raise many kinds on damaged data
            raise ImageReadError(
                f"{self.path}: the file is corrupt or truncated (tile {index}: {_first_line(exc)})"
            ) from exc
        return None if segment is None else segment.reshape(segment.shape[-3:])

    def _value_range(self) -> tuple[float, float]:
        if self._range is None:
            low, high = np.inf, -np.inf
            rows, cols = self._grid
            for index in range(rows * cols):
                segment = self._decode(index)
                if segment is None:
                    low = min(low, 0.0)
                    continue
                # only the image's pixels: an edge tile is padded past the image
                r, c = divmod(index, cols)
                h = min(segment.shape[0], self.size[0] - r * self._segment[0])
                w = min(segment.shape[1], self.size[1] - c * self._segment[1])
                inside = segment[:h, :w]
                low, high = min(low, float(inside.min())), max(high, float(inside.max()))
            self._range = (low, high)
        return self._range

    def close(self) -> None:
        self._tif.close()


def _region_readable(page) -> bool:  # noqa: ANN001 - tifffile's TiffPage
    """Whether :class:`_TiffRegions` reads this TIFF page (8-bit gray, RGB or RGBA, interleaved, or 16-bit
    gray; upright, in tiles or strips); other layouts are read whole through Pillow."""
    orientation = page.tags.get(274)
    gray16 = page.dtype == np.uint16 and page.samplesperpixel == 1 and page.photometric == 1
    return bool(
        (page.dtype == np.uint8 or gray16)
        and page.samplesperpixel in (1, 3, 4)
        and (page.samplesperpixel == 1 or page.planarconfig == 1)
        and page.photometric in (0, 1, 2)
        and page.imagedepth == 1
        and (orientation is None or orientation.value == 1)
        and page.dataoffsets
    )


def reads_in_regions(path: str | os.PathLike) -> bool:
    """Whether :func:`open_regions` reads this file a region at a time (a tiled or striped TIFF of a layout
    it handles) rather than decoding it whole. Raises :class:`ImageReadError` for an unreadable file."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    regions = _TiffRegions.open(path, None)
    if regions is None:
        return False
    regions.close()
    return True


def read_overview(path: str | os.PathLike, longest_side: int) -> tuple[np.ndarray, float] | None:
    """A reduced copy (longer side ``longest_side``, never upscaled) and its scale, when the file can give
    one quickly: a JPEG decoded at reduced scale, a pyramidal TIFF from its own reduced level. ``None`` for a
    file that would have to be decoded whole first (a PNG, a TIFF without reduced levels).
    Raises :class:`ImageReadError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return read_image_reduced(path, longest_side)
    if suffix not in (".tif", ".tiff"):
        return None
    regions = _TiffRegions.open(path, TILED_MAX_PIXELS)
    if regions is None:
        return None
    with regions:
        if max(regions.size) <= longest_side:
            return np.array(regions.read(0, 0, regions.size[1], regions.size[0])), 1.0
        level = regions.reduced_level(longest_side)
        if level is None:
            return None
        pixels = level.read(0, 0, level.size[1], level.size[0])
        reduced, _ = _reduce(pixels, regions.size, longest_side)
        return reduced, reduced.shape[1] / regions.size[1]


def assemble_region(
    region: tuple[int, int, int, int],
    size: tuple[int, int],
    tile: tuple[int, int],
    fetch: Callable[[int, int], np.ndarray | None],
    channels: int = 3,
    dtype: np.dtype | type = np.uint8,
) -> np.ndarray:
    """The pixels of ``region`` ``(x0, y0, x1, y1)`` of an ``(H, W)`` image stored as a grid of ``tile``
    ``(h, w)`` tiles: ``fetch(row, col)`` gives one tile as ``(h, w, channels)`` (one at an edge may be cut
    short, or run past the image), or ``None`` for an empty one, left zeros. Raises ``ValueError`` for a
    region not inside the image."""
    x0, y0, x1, y1 = region
    _check_region(size, x0, y0, x1, y1)
    tile_h, tile_w = tile
    out = np.zeros((y1 - y0, x1 - x0, channels), dtype=dtype)
    for row in range(y0 // tile_h, (y1 - 1) // tile_h + 1):
        for col in range(x0 // tile_w, (x1 - 1) // tile_w + 1):
            pixels = fetch(row, col)
            if pixels is None:
                continue
            ty, tx = row * tile_h, col * tile_w
            top, bottom = max(y0, ty), min(y1, ty + pixels.shape[0])
            left, right = max(x0, tx), min(x1, tx + pixels.shape[1])
            if bottom > top and right > left:
                out[top - y0 : bottom - y0, left - x0 : right - x0] = pixels[
                    top - ty : bottom - ty, left - tx : right - tx
                ]
    return out


def _check_region(size: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> None:
    if not (0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]):
        raise ValueError(f"region ({x0}, {y0}, {x1}, {y1}) is not inside the {size[1]}x{size[0]} image")


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb guard raised to ``max_pixels`` for a tiled path's read (our own header
    check, made first, is the limit there); untouched when ``max_pixels`` is within it."""
    if max_pixels is None or max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or 0):
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        # Pillow refuses twice its limit: above our own, so that our header check speaks first
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Validate an in-memory image and convert it to ``(H, W, 3)`` uint8 RGB.

    Accepted: shapes ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)``, ``(H, W, 4)`` (alpha dropped) with
    ``H, W >= 1``; dtypes uint8 (as is), uint16 (scaled from its ``[min, max]`` like 16-bit files),
    bool (0 / 255) and float in ``[0, 1]`` (times 255, rounded). Anything else raises ``ValueError``
    saying what was expected. A uint8 RGB input may be returned as is (not copied).
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a numpy array (H, W[, C]), got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected an image with H, W >= 1, got shape {array.shape}")
    if array.dtype == np.uint8:
        rgb = array
    elif array.dtype == np.uint16:
        rgb = _stretch_to_uint8(array)
    elif array.dtype == np.bool_:
        rgb = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("expected a float image without NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"expected a float image in [0, 1], got values in [{low}, {high}]")
        rgb = np.rint(array.astype(np.float32) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"expected dtype uint8, uint16, bool or float in [0, 1], got {array.dtype}")
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.shape[2] == 1:
        return np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3])


@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow (header only), or raise :class:`ImageReadError` saying why not."""
    reason = unreadable_reason(path)
    if reason is not None:  # checked before open: opening a named pipe would wait forever
        raise ImageReadError(f"{path}: {reason}")
    try:
        # Pillow gets an open file rather than the path: given a path, it memory-maps uncompressed files,
        # and Pillow 13.0 maps a TIFF with a quarter-turn orientation at its turned size, scrambling the
        # pixels of L, P, I;16, RGBA and CMYK images.
        file = open(path, "rb")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open the file ({exc.strerror})") from exc
    with file:
        if os.fstat(file.fileno()).st_size == 0:
            raise ImageReadError(f"{path}: the file is empty (0 bytes)")
        try:
            image = Image.open(file)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                f"{path}: the header claims an image too large to decode safely ({exc})"
            ) from exc
        except UnidentifiedImageError:
            layout = _tiff_layout(path)
            if layout is not None:
                raise ImageReadError(f"{path}: a TIFF of {layout}, a layout that cannot be read") from None
            raise ImageReadError(f"{path}: not an image, or in a format that cannot be read") from None
        except _DECODE_ERRORS as exc:
            raise ImageReadError(f"{path}: the file is corrupt ({exc})") from exc
        with image:
            yield image


def _tiff_layout(path: Path) -> str | None:
    """What a TIFF that Pillow cannot read holds, in a few words (``None`` when it is not a TIFF)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            samples = page.samplesperpixel
            planar = ", one plane per sample" if samples > 1 and page.planarconfig != 1 else ""
            return f"{page.imagewidth}x{page.imagelength}, {samples} samples of {page.dtype}{planar}"
    except Exception:  # noqa: BLE001 - not a TIFF, or one tifffile cannot parse either: no description
        return None


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height:,} pixels is larger than the limit of "
            f"{max_pixels:,} pixels"
        )


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation 1-8 still to apply, from the header's metadata (1 when absent or unreadable)."""
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        return (
            1  # Pillow orients TIFFs itself: ``size`` is upright from the header on, load() turns the pixels
        )
    try:
        # PngImageFile.getexif decodes all pixel data when no eXIf chunk precedes it; the base method
        # reads only what the header held. Using it for both functions keeps image_size cheap and in
        # agreement with read_image.
        exif = Image.Image.getexif(im) if isinstance(im, PngImagePlugin.PngImageFile) else im.getexif()
        value = exif.get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return 1  # broken EXIF is ignored, as browsers and viewers do
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb_array(im: Image.Image, path: Path) -> np.ndarray:
    """A loaded Pillow image in any mode -> ``(H, W, 3)`` uint8 RGB."""
    if im.mode in _HIGH_DEPTH_MODES:
        values = np.asarray(im)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ImageReadError(f"{path}: the float image holds NaN or infinite values")
        return np.repeat(_stretch_to_uint8(values)[:, :, None], 3, axis=2)
    # Palette images may carry transparency that only an RGBA conversion honours without a warning.
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    try:
        rgb = im.convert("RGB")
    except ValueError as exc:
        raise ImageReadError(f"{path}: unsupported image mode {im.mode!r} ({exc})") from exc
    return np.array(rgb, dtype=np.uint8)


def _stretch_to_uint8(values: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale any numeric array linearly from ``value_range`` (default: its own ``[min, max]``) to uint8
    ``[0, 255]``; a constant image -> 0."""
    low, high = value_range if value_range is not None else (float(values.min()), float(values.max()))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)
