"""Large images: TIFF region reads through tifffile, reduced-resolution reads, the tiled paths' pixel limit,
the large synthetic scenes, and the bad input each brings (one-line errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnn_core.cli import main
from maskrcnn_core.data.coco import load_coco
from maskrcnn_core.data.synthetic import LARGE_SCENE_OBJECT_SIZE, generate_large_scene
from maskrcnn_core.image_io import (
    MAX_PIXELS,
    TILED_MAX_PIXELS,
    ImageReadError,
    image_size,
    open_regions,
    read_image,
    read_image_reduced,
)
from maskrcnn_core.protocol import ExitCode


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(
    "layout",
    [
        {"tile": (256, 256), "compression": "zlib"},
        {"tile": (128, 64), "compression": None},
        {"rowsperstrip": 50, "compression": "zlib"},
        {"tile": (256, 256), "compression": "zlib", "bigtiff": True},
    ],
    ids=["tiled-deflate", "tiled-raw", "strips", "bigtiff"],
)
@pytest.mark.parametrize("channels", [3, 1, 4])
def test_region_reads_equal_full_reads(tmp_path: Path, layout, channels):
    pixels = _noise((700, 1000, channels) if channels > 1 else (700, 1000))
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, pixels, photometric="minisblack" if channels == 1 else "rgb", **layout)
    full = read_image(path)  # Pillow's full read: the reference
    with open_regions(path) as regions:
        assert type(regions).__name__ == "_TiffRegions"  # decoded a tile at a time, not whole
        assert regions.size == (700, 1000)
        for x0, y0, x1, y1 in [
            (0, 0, 1000, 700),
            (250, 130, 777, 600),
            (999, 699, 1000, 700),
            (0, 512, 64, 700),
        ]:
            np.testing.assert_array_equal(regions.read(x0, y0, x1, y1), full[y0:y1, x0:x1])


def test_other_formats_are_served_whole_with_the_same_pixels(tmp_path: Path):
    path = tmp_path / "photo.png"
    Image.fromarray(_noise((300, 400, 3))).save(path)
    with open_regions(path) as regions:
        np.testing.assert_array_equal(regions.read(10, 20, 300, 250), read_image(path)[20:250, 10:300])


def test_a_truncated_tiff_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _noise((600, 600, 3)), tile=(128, 128), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the tiles past the middle are gone (the header is first)
    with pytest.raises(ImageReadError) as info:
        with open_regions(path) as regions:
            regions.read(0, 0, 600, 600)
    assert "corrupt or truncated" in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_tiff_header_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(ImageReadError) as info:
        open_regions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_the_tiled_paths_serve_past_the_untiled_limit_up_to_theirs(tmp_path: Path):
    """A 10,240 x 10,240 tiled TIFF (105 MP: over the untiled 100 MP limit) is refused by a full read and
    served by region reads; an image over the tiled limit is refused before anything is decoded."""
    path = tmp_path / "huge.tif"
    side = 10_240
    assert side * side > MAX_PIXELS
    with tifffile.TiffWriter(path) as tif:  # tiles written one at a time: never the whole image in memory
        tile = np.full((1024, 1024), 77, dtype=np.uint8)
        tif.write(
            (tile for _ in range(100)),
            shape=(side, side),
            dtype=np.uint8,
            tile=(1024, 1024),
            compression="zlib",
            photometric="minisblack",
        )
    with pytest.raises(ImageReadError, match="larger than the limit of 100,000,000 pixels"):
        read_image(path)
    assert image_size(path, max_pixels=TILED_MAX_PIXELS) == (side, side)
    with open_regions(path) as regions:
        assert (regions.read(5000, 5000, 5100, 5050) == 77).all()
    with pytest.raises(ImageReadError) as info:
        open_regions(path, max_pixels=side * side - 1)
    assert "larger than the limit" in str(info.value) and "\n" not in str(info.value)


def test_a_jpeg_is_read_reduced_through_its_draft_mode(tmp_path: Path):
    yy, xx = np.mgrid[0:1600, 0:2400]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
    path = tmp_path / "wide.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    reduced, scale = read_image_reduced(path, 300)
    assert max(reduced.shape[:2]) == 300 and scale == pytest.approx(300 / 2400)
    expected = np.asarray(Image.fromarray(read_image(path)).resize(reduced.shape[1::-1], Image.BOX))
    assert np.abs(reduced.astype(int) - expected.astype(int)).mean() < 12
    with Image.open(path) as im:  # what the draft decode does: 1/8 scale straight from the DCT
        im.draft("RGB", (300, 200))
        assert im.size == (300, 200)


def test_a_tiff_is_read_reduced_band_by_band(tmp_path: Path):
    path = tmp_path / "big.tif"
    pixels = _noise((1500, 1100, 3), seed=4)
    tifffile.imwrite(path, pixels, tile=(256, 256), compression="zlib")
    reduced, scale = read_image_reduced(path, 256)
    assert reduced.shape == (256, round(1100 * 256 / 1500), 3)
    assert scale == pytest.approx(reduced.shape[1] / 1100)
    assert abs(float(reduced.mean()) - float(pixels.mean())) < 2


# ------------------------------------------------------------------------------ large synthetic scenes


@pytest.mark.parametrize("image_format", ["tif", "png"])
def test_a_large_scene_holds_small_shapes_the_demo_model_knows(tmp_path: Path, image_format):
    json_path = generate_large_scene(
        tmp_path, height=2100, width=2600, num_objects=60, seed=5, image_format=image_format
    )
    data, report = load_coco(json_path, tmp_path / "images")
    (image,) = data.images
    assert image.path.suffix == f".{image_format}" and (image.height, image.width) == (2100, 2600)
    assert len(image.annotations) == 60 and not report.issues
    smallest, largest = LARGE_SCENE_OBJECT_SIZE
    for ann in image.annotations:
        x0, y0, x1, y1 = ann.mask.tight_box()
        assert smallest - 2 <= max(x1 - x0, y1 - y0) <= largest + 2
    again = generate_large_scene(
        tmp_path / "again", height=2100, width=2600, num_objects=60, seed=5, image_format=image_format
    )
    assert again.read_text() == json_path.read_text()  # the same seed draws the same scene
    assert (tmp_path / "again" / "images" / image.path.name).read_bytes() == image.path.read_bytes()


def test_the_synthetic_command_draws_a_large_scene(tmp_path: Path, capsys):
    out = tmp_path / "scene"
    args = ["synthetic", str(out), "--height", "2048", "--width", "2200", "--num-images", "1"]
    assert main([*args, "--objects", "25"]) == ExitCode.OK
    data, _ = load_coco(out / "train.json", out / "images")
    assert len(data.images[0].annotations) == 25
    assert tifffile.TiffFile(data.images[0].path).pages.first.is_tiled
