"""Reading images as users have them (any orientation, bit depth or colour mode) as ``(H, W, 3)`` uint8 RGB.

numpy + Pillow only (no torch), so the app's image browser can use :func:`image_size` cheaply.

Every failure is an :class:`ImageReadError` naming the file and what is wrong with it; Pillow's own
exceptions and its decompression-bomb warning never escape.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

from maskrcnn_core.paths import unreadable_reason

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageReadError", "image_size", "read_image", "to_rgb_uint8"]

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


#: The largest image (width x height) read by default, full reads and thumbnails alike.
MAX_PIXELS = 100_000_000


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
            orientation = _orientation(im)
            try:
                im.load()
            except _DECODE_ERRORS as exc:
                raise ImageReadError(f"{path}: the file is corrupt or truncated ({exc})") from exc
            upright = im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im
            return _to_rgb_array(upright, path)


def image_size(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(H, W)`` of the upright image (after EXIF orientation), read from the file's header only.

    Agrees with ``read_image(path).shape[:2]``. Raises :class:`ImageReadError` as :func:`read_image`
    does, except that a corrupt or truncated body goes unnoticed; ``max_pixels`` is checked when given
    (a thumbnail passes :data:`MAX_PIXELS`, so it refuses what a full read refuses).
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            width, height = im.size
            _check_pixels(path, width, height, max_pixels)
            if _orientation(im) in (5, 6, 7, 8):  # a quarter turn swaps the sides
                width, height = height, width
            return height, width


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
            raise ImageReadError(
                f"{path}: the header claims an image too large to decode safely ({exc})"
            ) from exc
        except UnidentifiedImageError:
            raise ImageReadError(f"{path}: not an image, or in a format that cannot be read") from None
        except _DECODE_ERRORS as exc:
            raise ImageReadError(f"{path}: the file is corrupt ({exc})") from exc
        with image:
            yield image


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
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


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale any numeric array linearly from its ``[min, max]`` to uint8 ``[0, 255]``; constant -> 0."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)
