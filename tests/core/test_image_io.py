"""read_image / image_size / to_rgb_uint8 on files written by Pillow in tmp_path."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from maskrcnn_core.image_io import IMAGE_EXTENSIONS, ImageReadError, image_size, read_image, to_rgb_uint8


def _quadrants(width: int = 40, height: int = 24) -> Image.Image:
    """An RGB image whose four quadrants have different colours, so that every flip and turn shows."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    pixels[: height // 2, width // 2 :] = (0, 255, 0)
    pixels[height // 2 :, : width // 2] = (0, 0, 255)
    pixels[height // 2 :, width // 2 :] = (255, 255, 0)
    return Image.fromarray(pixels)


def _with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` 8-bit RGB pixels but holds almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation, suffix):
    path = tmp_path / f"o{orientation}{suffix}"
    _quadrants().save(path, exif=_with_orientation(orientation), quality=95)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = read_image(path)
    assert got.dtype == np.uint8 and got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == got.shape[:2]


def test_orientation_6_and_8_turn_the_image_upright(tmp_path):
    # 6: the camera was turned clockwise, so the stored top-left is shown top-right; 8: bottom-left.
    for suffix in (".png", ".tif"):
        for orientation, corner in ((6, (0, -1)), (8, (-1, 0))):
            path = tmp_path / f"o{orientation}{suffix}"
            _quadrants(40, 24).save(path, exif=_with_orientation(orientation))
            image = read_image(path)
            assert image.shape == (40, 24, 3)
            assert tuple(image[corner]) == (255, 0, 0)
            assert image_size(path) == (40, 24)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGBA", "P", "CMYK", "RGB"])
def test_quarter_turned_tiff_in_every_mode(tmp_path, mode):
    # Pillow 13.0 scrambles these when it memory-maps the file (opened by path): numpy is the reference.
    source = _quadrants(7, 5)
    source = {
        "I;16": lambda: Image.fromarray(np.asarray(source)[..., 0].astype(np.uint16) * 200),
        "P": lambda: source.quantize(4),
    }.get(mode, lambda: source.convert(mode))()
    plain = tmp_path / "plain.tif"
    source.save(plain)
    for orientation, turns in ((6, -1), (8, 1)):
        path = tmp_path / f"o{orientation}.tif"
        source.save(path, exif=_with_orientation(orientation))
        np.testing.assert_array_equal(read_image(path), np.rot90(read_image(plain), turns))
        assert image_size(path) == (7, 5)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_by_its_range_not_truncated(tmp_path, suffix):
    values = np.linspace(1000, 5000, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = read_image(path)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    np.testing.assert_array_equal(image[..., 0], np.rint((values - 1000.0) * 255 / 4000).astype(np.uint8))
    # Pillow's own conversion clips every value above 255: the naive result would be all white.
    assert (np.asarray(Image.open(path).convert("L")) == 255).all()


def test_float_tiff_is_scaled_and_nan_is_refused(tmp_path):
    values = np.linspace(-2.0, 6.0, 30 * 20, dtype=np.float32).reshape(20, 30)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    image = read_image(path)
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255
    values[3, 4] = np.nan
    Image.fromarray(values).save(path)
    with pytest.raises(ImageReadError, match="float.tif.*NaN"):
        read_image(path)


@pytest.mark.parametrize("mode", ["L", "1", "LA"])
def test_gray_modes_become_gray_rgb(tmp_path, mode):
    source = _quadrants().convert(mode)
    path = tmp_path / "gray.png"
    source.save(path)
    image = read_image(path)
    assert image.shape == (24, 40, 3) and image.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], np.asarray(source.convert("L")))


def test_palette_becomes_its_colours(tmp_path):
    source = _quadrants().quantize(8)
    path = tmp_path / "palette.png"
    source.save(path)
    np.testing.assert_array_equal(read_image(path), np.asarray(source.convert("RGB")))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    _quadrants().convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    np.testing.assert_array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    assert np.abs(image[0, 0].astype(int) - (255, 0, 0)).max() < 8  # the red quadrant stays red


def test_alpha_is_dropped_not_composited(tmp_path):
    pixels = np.zeros((10, 12, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 0  # fully transparent red
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(read_image(path), pixels[..., :3])


def test_palette_with_transparency_reads_without_warning(tmp_path):
    path = tmp_path / "palette.png"
    _quadrants().quantize(4).save(path, transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    assert image.shape == (24, 40, 3)


def test_unsupported_mode_is_named(tmp_path):
    # Premultiplied grayscale + alpha ("La", TIFF ExtraSamples = 1): Pillow opens it but cannot make RGB.
    path = tmp_path / "premultiplied.tif"
    Image.new("LA", (4, 4), (100, 128)).save(path)
    unassociated = b"\x52\x01\x03\x00\x01\x00\x00\x00\x02\x00"  # tag 338 ExtraSamples, SHORT, 1, value 2
    data = path.read_bytes()
    assert data.count(unassociated) == 1
    path.write_bytes(data.replace(unassociated, unassociated[:8] + b"\x01\x00"))
    assert Image.open(path).mode == "La"
    with pytest.raises(ImageReadError, match="premultiplied.tif.*unsupported image mode 'La'"):
        read_image(path)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="nope.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="nope.jpg: no such file"):
        image_size(str(tmp_path / "nope.jpg"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: the file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageReadError, match="notes.jpg: not an image"):
        read_image(path)
    with pytest.raises(ImageReadError, match="notes.jpg: not an image"):
        image_size(path)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert image_size(path) == (200, 300)  # the header is intact
    with pytest.raises(ImageReadError, match="cut.jpg: the file is corrupt or truncated"):
        read_image(path)


def test_size_limit_is_checked_from_the_header(tmp_path):
    path = tmp_path / "big.png"
    _png_header_only(path, 12_000, 10_000)  # 120 M pixels: above our default limit, under Pillow's error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not surface
        assert image_size(path) == (10_000, 12_000)
        with pytest.raises(ImageReadError, match=r"big.png: 12000x10000 = 120,000,000 pixels .* 100,000,000"):
            read_image(path)
    small = tmp_path / "small.png"
    _quadrants().save(small)
    with pytest.raises(ImageReadError, match="40x24 = 960 pixels is larger than the limit of 500 pixels"):
        read_image(small, max_pixels=500)
    assert read_image(small, max_pixels=None).shape == (24, 40, 3)


def test_decompression_bomb_becomes_our_error(tmp_path):
    path = tmp_path / "bomb.png"
    _png_header_only(path, 20_000, 20_000)  # 400 M pixels: Pillow refuses to open it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match="bomb.png: the header claims an image too large"):
            read_image(path, max_pixels=None)
        with pytest.raises(ImageReadError, match="bomb.png"):
            image_size(path, max_pixels=None)
    # within what the tiled paths serve, the header is read (a large image is listed, imported, exported)
    assert image_size(path) == (20_000, 20_000)
    # Between Pillow's warning and error limits, with our limit lifted: no warning, just a decode error.
    path = tmp_path / "warns.png"
    _png_header_only(path, 10_000, 9_500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match="warns.png: the file is corrupt or truncated"):
            read_image(path, max_pixels=None)


def test_image_extensions():
    assert IMAGE_EXTENSIONS == frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 128]], np.uint8), [[[0, 0, 0], [128, 128, 128]]]),
        (np.array([[[7], [9]]], np.uint8), [[[7, 7, 7], [9, 9, 9]]]),
        (np.array([[[1, 2, 3, 4]]], np.uint8), [[[1, 2, 3]]]),
        (np.array([[True, False]]), [[[255, 255, 255], [0, 0, 0]]]),
        (np.array([[0.0, 0.5, 1.0]], np.float32), [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]),
        (np.array([[0.2]], np.float16), [[[51, 51, 51]]]),
        (np.array([[100, 300, 500]], np.uint16), [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]),
    ],
)
def test_to_rgb_uint8_converts(array, expected):
    rgb = to_rgb_uint8(array)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, np.array(expected, np.uint8))


def test_to_rgb_uint8_keeps_uint8_rgb():
    array = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(array), array)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        ([[1, 2]], "numpy array"),
        (np.zeros(5, np.uint8), r"shape \(H, W\).*got \(5,\)"),
        (np.zeros((2, 2, 3, 1), np.uint8), r"got \(2, 2, 3, 1\)"),
        (np.zeros((4, 4, 2), np.uint8), r"\(H, W, 4\), got \(4, 4, 2\)"),
        (np.zeros((4, 4, 5), np.uint8), r"got \(4, 4, 5\)"),
        (np.zeros((0, 4, 3), np.uint8), "H, W >= 1"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[0.5, 1.5]]), r"in \[0, 1\]"),
        (np.array([[-0.1]]), r"in \[0, 1\]"),
        (np.array([[1, 2]], dtype=object), "got object"),
        (np.array([[1, 2]], dtype=np.int32), "got int32"),
    ],
)
def test_to_rgb_uint8_rejects(array, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(array)


def test_a_quick_overview_comes_from_a_jpegs_reduced_decode_or_a_pyramidal_tiffs_own_level(tmp_path):
    import cv2
    import tifffile

    from maskrcnn_core.image_io import read_overview, reads_in_regions

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (4000, 3000))
    reduced = cv2.resize(image, (2000, 1500), interpolation=cv2.INTER_AREA)
    pyramidal = tmp_path / "pyramidal.tif"
    with tifffile.TiffWriter(pyramidal) as tif:
        tif.write(image, subifds=1, tile=(256, 256), photometric="rgb")
        tif.write(reduced, subfiletype=1, tile=(256, 256), photometric="rgb")
    overview, scale = read_overview(pyramidal, 1000)
    assert overview.shape == (750, 1000, 3) and scale == 0.25
    expected = cv2.resize(reduced, (1000, 750), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(overview, expected)  # from the file's own level, not the full image
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, image, tile=(256, 256), photometric="rgb")
    assert read_overview(flat, 1000) is None and reads_in_regions(flat)  # no level: no quick overview
    jpeg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpeg), image)
    overview, scale = read_overview(jpeg, 1000)
    assert overview.shape == (750, 1000, 3) and scale == 0.25 and not reads_in_regions(jpeg)
    png = tmp_path / "photo.png"
    cv2.imwrite(str(png), image)
    assert read_overview(png, 1000) is None


def test_a_tiff_of_a_layout_that_cannot_be_read_says_what_it_holds(tmp_path):
    import tifffile

    path = tmp_path / "bands.tif"
    tifffile.imwrite(path, np.zeros((40, 60, 5), np.float32), planarconfig="contig")
    with pytest.raises(ImageReadError, match=r"bands.tif: a TIFF of 60x40, 5 samples of float32, a layout"):
        read_image(path)


def test_a_16_bit_grayscale_tiled_tiff_is_read_in_regions_with_the_whole_images_stretch(tmp_path):
    """Microscopy's usual file: regions agree pixel for pixel with a full read (stretched from the whole
    image's range, not each region's), and the file is never decoded whole."""
    import tifffile

    from maskrcnn_core.image_io import open_regions, reads_in_regions

    rng = np.random.default_rng(0)
    values = (rng.integers(900, 1200, (700, 1000)) + np.linspace(0, 3000, 1000)).astype(np.uint16)
    values[650:, 950:] = 40_000  # the bright corner sets the range that every region shares
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, values, tile=(256, 256), photometric="minisblack")
    assert reads_in_regions(path)
    whole = read_image(path)
    with open_regions(path) as regions:
        for x0, y0, x1, y1 in [(0, 0, 300, 200), (260, 100, 900, 650), (900, 600, 1000, 700)]:
            np.testing.assert_array_equal(regions.read(x0, y0, x1, y1), whole[y0:y1, x0:x1])
