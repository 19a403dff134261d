"""Tiled inference: the tile grid, the edge rule, the merge by mask IoU, and the demo model on a large
synthetic scene (tiled finds the small objects a whole-image pass shrinks away)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from app.resources import DEMO_MODEL
from maskrcnn_core.data.coco import load_coco
from maskrcnn_core.data.synthetic import generate_large_scene
from maskrcnn_core.engine.tiled_predict import TiledImage, run_tiled
from maskrcnn_core.engine.tiling import (
    EDGE_MARGIN,
    Tile,
    TileOptions,
    TilingError,
    concatenate,
    merge_duplicates,
    should_tile,
    tile_grid,
    whole_in_tile,
)
from maskrcnn_core.image_io import read_image
from maskrcnn_core.types import CroppedMask, Prediction

# ----------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("image_size", "size", "overlap"),
    [((1000, 1300), 512, 128), ((512, 512), 512, 100), ((300, 2000), 256, 64), ((900, 701), 300, 250)],
)
def test_tiles_cover_the_image_at_full_size_with_at_least_the_overlap(image_size, size, overlap):
    height, width = image_size
    tiles = tile_grid(image_size, size, overlap)
    covered = np.zeros(image_size, dtype=np.int32)
    for t in tiles:
        assert (t.height, t.width) == (min(size, height), min(size, width))  # they batch together
        assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert covered.min() >= 1
    xs = sorted({t.x0 for t in tiles})
    for left, right in zip(xs, xs[1:], strict=False):  # neighbours share at least the overlap
        assert left + min(size, width) - right >= overlap


def test_a_small_image_is_one_tile():
    assert tile_grid((100, 200), 512, 128) == [Tile(0, 0, 200, 100)]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"size": 64, "overlap": 128}, "tile size 64 must be larger than the tile overlap 128"),
        ({"size": 128, "overlap": 128}, "tile size 128 must be larger than the tile overlap 128"),
        ({"mode": "sometimes"}, "tile mode must be one of auto, on, off"),
        ({"size": 8, "overlap": 0}, "at least 32 pixels"),
        ({"overlap": -1}, "non-negative"),
        ({"auto_factor": 0.5}, "at least 1"),
    ],
)
def test_bad_tile_options_are_one_line_errors(kwargs, words):
    with pytest.raises(TilingError, match=words) as info:
        TileOptions(**kwargs)
    assert "\n" not in str(info.value)


def test_auto_tiles_an_image_larger_than_the_models_scale_by_the_factor():
    auto = TileOptions()  # factor 2: the demo model's 192 / 256
    assert not should_tile((384, 512), 192, 256, auto)  # shrunk by exactly 2
    assert should_tile((400, 540), 192, 256, auto)
    assert not should_tile((400, 540), 192, 256, TileOptions(auto_factor=3.0))
    assert should_tile((100, 100), 192, 256, TileOptions(mode="on"))
    assert not should_tile((8000, 8000), 192, 256, TileOptions(mode="off"))


# ------------------------------------------------------------------------ edges and duplicates


def _prediction(masks: list[CroppedMask], scores: list[float], labels: list[int]) -> Prediction:
    boxes = np.array([m.tight_box() for m in masks], dtype=np.float32).reshape(-1, 4)
    return Prediction(
        image_size=masks[0].image_size,
        boxes=boxes,
        scores=np.array(scores, dtype=np.float32),
        labels=np.array(labels, dtype=np.int64),
        category_ids=np.array(labels, dtype=np.int64),
        masks=tuple(masks),
    )


def _disc(image_size, cx, cy, r) -> CroppedMask:
    yy, xx = np.mgrid[0 : image_size[0], 0 : image_size[1]]
    return CroppedMask.from_full((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)


def test_an_instance_at_an_inner_tile_edge_is_cut_but_not_at_the_image_border():
    image_size = (1000, 1000)
    inner = Tile(400, 0, 912, 512)  # its left and bottom edges are inner, its top one is the image's
    boxes = np.array(
        [
            [0, 100, 30, 130],  # touches the inner left edge
            [100, 0, 140, 30],  # touches the top, which is the image border
            [100, 480, 140, 512],  # runs past the inner bottom edge
            [100, 100, 140, 140],  # well inside
            [EDGE_MARGIN + 1, 200, 40, 240],  # just inside the margin
        ],
        dtype=np.float32,
    )
    assert whole_in_tile(boxes, inner, image_size).tolist() == [False, True, False, True, True]


def test_duplicates_merge_by_mask_iou_keeping_the_best_score():
    size = (200, 300)
    seen_twice = [_disc(size, 50, 50, 15), _disc(size, 51, 50, 15)]  # one object in two tiles' overlap
    # two touching objects: their boxes overlap a lot, their masks hardly (box NMS would drop one)
    ring_a = _disc(size, 150, 100, 20).to_full() & ~_disc(size, 150, 100, 12).to_full()
    inside = _disc(size, 150, 100, 10)
    other_label = _disc(size, 50, 51, 15)
    prediction = _prediction(
        [seen_twice[0], seen_twice[1], CroppedMask.from_full(ring_a), inside, other_label],
        [0.6, 0.9, 0.8, 0.7, 0.5],
        [1, 1, 1, 1, 2],
    )
    merged = merge_duplicates(concatenate([prediction], size, "scene.png"))
    assert merged.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.5])
    assert merged.labels.tolist() == [1, 1, 1, 2]
    assert merged.masks[0].x0 == seen_twice[1].x0  # the best one's mask, not a union
    assert all(m.image_size == size for m in merged.masks)


def test_tiles_of_a_real_scene_give_each_object_once_and_whole(tmp_path: Path):
    """An oracle detector (each tile's detections are the ground-truth objects visible in it, cut by the
    tile) on a real synthetic scene: after the edge rule and the merge, every object is there once,
    with its whole mask."""
    image, pixels, detect = _oracle_scene(tmp_path)
    truth = [a.mask for a in image.annotations]
    options = TileOptions(mode="on", size=256, overlap=96, full_image_pass=False)  # objects: 60 px at most
    tiled = TiledImage(0, None, options, (192, 256), array=pixels)
    progress: list[tuple[int, int]] = []
    result = run_tiled(tiled, 4, detect, progress=lambda done, total: progress.append((done, total)))
    assert result is not None and len(result) == len(truth)
    tiles = len(tile_grid((700, 900), 256, 96))
    assert progress == [(min(n, tiles), tiles) for n in range(4, tiles + 4, 4)]  # after each batch of 4
    found = sorted((m.crop_box, m.area) for m in result.masks)
    assert found == sorted((m.crop_box, m.area) for m in truth)


def test_an_overlap_smaller_than_the_objects_cut_is_a_one_line_warning(tmp_path: Path, caplog):
    image, pixels, detect = _oracle_scene(tmp_path)
    for overlap, warned in ((96, False), (24, True)):
        caplog.clear()
        options = TileOptions(mode="on", size=256, overlap=overlap, full_image_pass=False)
        with caplog.at_level("WARNING", logger="maskrcnn_core.engine.tiled_predict"):
            run_tiled(TiledImage(0, "scene.tif", options, (192, 256), array=pixels), 4, detect)
        lines = [r.getMessage() for r in caplog.records]
        assert bool(lines) == warned, lines
        if warned:
            (line,) = lines
            assert "larger than the 24 px tile overlap" in line and "--tile-overlap" in line


def _oracle_scene(tmp_path: Path):  # noqa: ANN202 - (image, pixels, detect)
    json_path = generate_large_scene(tmp_path, height=700, width=900, num_objects=40, seed=3)
    data, _ = load_coco(json_path, tmp_path / "images")
    image = data.images[0]
    truth = [a.mask for a in image.annotations]
    pixels = read_image(image.path)

    def detect(arrays: list[np.ndarray], native_scale: bool) -> list[Prediction]:
        assert native_scale
        out = []
        for array in arrays:
            # where this tile lies: in-memory tiles are views of the scene's array
            offset = array.__array_interface__["data"][0] - pixels.__array_interface__["data"][0]
            y0, x0 = offset // pixels.strides[0], offset % pixels.strides[0] // pixels.strides[1]
            masks, labels = [], []
            for ann, mask in zip(image.annotations, truth, strict=True):
                part = mask.to_full()[y0 : y0 + array.shape[0], x0 : x0 + array.shape[1]]
                if part.any():
                    masks.append(CroppedMask.from_full(part))
                    labels.append(ann.label)
            out.append(_prediction(masks, list(np.linspace(0.9, 0.5, len(masks))), labels))
        return out

    return image, pixels, detect


# ------------------------------------------------------------------------- the demo model, for real


def _matched(prediction: Prediction, truth: list[CroppedMask], iou: float = 0.5) -> int:
    from maskrcnn_core.engine.tiling import mask_iou

    kept = prediction.filter(0.5)
    return sum(any(mask_iou(t, m) >= iou for m in kept.masks) for t in truth)


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the demo model is not built")
def test_tiled_inference_finds_the_small_objects_the_whole_image_pass_misses(tmp_path: Path):
    from maskrcnn_core.engine.predictor import Predictor

    json_path = generate_large_scene(tmp_path, height=1200, width=1600, num_objects=40, seed=1)
    data, _ = load_coco(json_path, tmp_path / "images")
    image = data.images[0]
    truth = [a.mask for a in image.annotations]
    predictor = Predictor(DEMO_MODEL, device="cpu")
    (whole,) = predictor.predict([image.path])
    # auto: 1200 x 1600 is more than twice the demo model's 192 x 256
    predictor.tiling = TileOptions(full_image_pass=False)
    (tiled,) = predictor.predict([image.path])
    assert tiled.ok and tiled.image_size == (1200, 1600)
    assert all(m.image_size == (1200, 1600) for m in tiled.masks)
    found_whole, found_tiled = _matched(whole, truth), _matched(tiled, truth)
    print(f"objects found (mask IoU >= 0.5): whole image {found_whole}/{len(truth)}, tiled {found_tiled}")
    assert found_tiled >= 0.7 * len(truth)
    assert found_whole <= 0.2 * len(truth)
    # no object twice: merged duplicates leave no two confident masks of one label on the same pixels
    kept = tiled.filter(0.5)
    assert len(merge_duplicates(kept)) == len(kept)

    # the optional full-image pass adds its detections in the image's pixels
    predictor.tiling = TileOptions(full_image_pass=True)
    (with_pass,) = predictor.predict([image.path])
    assert with_pass.ok and all(m.image_size == (1200, 1600) for m in with_pass.masks)
    assert _matched(with_pass, truth) >= found_tiled - 2


# ------------------------------------------------------------------------------ the command line


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the demo model is not built")
def test_predict_with_tile_flags_writes_the_tiled_detections(tmp_path: Path, capsys):
    from maskrcnn_core.cli import main
    from maskrcnn_core.protocol import ExitCode

    generate_large_scene(tmp_path, height=800, width=1000, num_objects=20, seed=2)
    images = tmp_path / "images"
    base = ["predict", "--weights", str(DEMO_MODEL), "--images", str(images), "--progress", "none"]
    tiled, whole = tmp_path / "tiled.json", tmp_path / "whole.json"
    assert main([*base, "--out", str(tiled), "--tile", "384", "--tile-overlap", "96"]) == ExitCode.OK
    assert main([*base, "--out", str(whole), "--tile", "off"]) == ExitCode.OK
    tiled_results = json.loads(tiled.read_text())
    confident = [r for r in tiled_results if r["score"] >= 0.5]
    assert len(confident) >= 0.7 * 20
    assert all(r["file_name"] == "scene_000000.tif" for r in tiled_results)
    assert len([r for r in json.loads(whole.read_text()) if r["score"] >= 0.5]) <= 0.2 * 20


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tile", "64", "--tile-overlap", "128"], "tile size 64 must be larger than the tile overlap 128"),
        (["--tile", "huge"], "--tile must be auto, off or a tile size in pixels"),
        (["--tile", "auto", "--tile-auto-factor", "0.5"], "the auto tiling factor must be at least 1"),
    ],
)
def test_bad_tile_flags_are_one_line_errors_before_any_model_loads(tmp_path: Path, capsys, flags, words):
    from maskrcnn_core.cli import main
    from maskrcnn_core.protocol import ExitCode

    out = tmp_path / "out.json"
    missing_model = tmp_path / "no-model.pt"  # never opened: the flags are checked first
    args = ["predict", "--weights", str(missing_model), "--images", str(tmp_path), "--out", str(out)]
    assert main([*args, *flags]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not out.exists()


def test_an_image_over_the_tiled_limit_is_a_one_line_failed_prediction(tmp_path: Path):
    """A TIFF whose header claims 40,000 x 30,000 pixels (1.2 gigapixels, over the tiled paths' limit)."""
    import tifffile

    from maskrcnn_core.engine.tiled_predict import open_tiled

    path = tmp_path / "forged.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), tile=(32, 32), photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        offsets = tif.pages.first.tags[256].valueoffset, tif.pages.first.tags[257].valueoffset
    with open(path, "r+b") as f:
        for offset, value in zip(offsets, (40_000, 30_000), strict=True):
            f.seek(offset)
            f.write(struct.pack("<I", value))
    refused = open_tiled(0, path, TileOptions(), (192, 256))  # from the header, before any decoding
    ran = run_tiled(TiledImage(0, str(path), TileOptions(), (192, 256)), 2, _never_called)
    for prediction in (refused, ran):
        assert isinstance(prediction, Prediction) and not prediction.ok
        assert "larger than the limit of 1,000,000,000 pixels" in prediction.error
        assert "\n" not in prediction.error


def _never_called(arrays, native_scale):  # noqa: ANN001, ANN202
    raise AssertionError("nothing may run on an image that could not be read")


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the demo model is not built")
def test_the_full_image_pass_finds_objects_larger_than_the_overlap(tmp_path: Path):
    from maskrcnn_core.engine.predictor import Predictor

    json_path = generate_large_scene(
        tmp_path, height=900, width=1200, num_objects=4, seed=7, object_size=(220, 260)
    )
    data, _ = load_coco(json_path, tmp_path / "images")
    image = data.images[0]
    truth = [a.mask for a in image.annotations]
    predictor = Predictor(DEMO_MODEL, device="cpu")
    small_tiles = {"mode": "on", "size": 256, "overlap": 64}  # every tile cuts a 220 px object
    predictor.tiling = TileOptions(**small_tiles, full_image_pass=False)
    (tiles_only,) = predictor.predict([image.path])
    predictor.tiling = TileOptions(**small_tiles, full_image_pass=True)
    (with_pass,) = predictor.predict([image.path])
    found_tiles, found_pass = _matched(tiles_only, truth), _matched(with_pass, truth)
    print(f"objects of 220-260 px found: tiles alone {found_tiles}/{len(truth)}, full pass too {found_pass}")
    assert found_pass >= len(truth) - 1
    assert found_tiles < found_pass


# ------------------------------------------------------------------------------ the box prompt


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((700, 500, 740, 540), (464, 264, 976, 776)),  # a small box: a tile around it
        ((5, 5, 45, 45), (0, 0, 512, 512)),  # in a corner: pushed inside, still a tile
        ((100, 100, 900, 300), (0, 0, 1028, 512)),  # wider than a tile: the box and its context
    ],
)
def test_a_box_prompt_runs_on_the_region_around_the_box(box, expected):
    from maskrcnn_core.engine.tiling import box_region

    region = box_region(np.array([box], dtype=np.float32), (1200, 1600), TileOptions(size=512, overlap=128))
    assert (region.x0, region.y0, region.x1, region.y1) == expected


@pytest.mark.slow
@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="the demo model is not built")
def test_a_box_prompt_on_a_large_image_segments_the_object_from_its_region(tmp_path: Path):
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.tiling import mask_iou

    json_path = generate_large_scene(tmp_path, height=1200, width=1600, num_objects=40, seed=1)
    data, _ = load_coco(json_path, tmp_path / "images")
    image = data.images[0]
    predictor = Predictor(DEMO_MODEL, device="cpu")
    predictor.tiling = TileOptions(full_image_pass=False)
    truth = [a for a in image.annotations if a.area > 200][:6]
    boxes = np.array([a.bbox for a in truth], dtype=np.float32)
    tiled = predictor.segment_boxes(image.path, boxes)
    predictor.tiling = TileOptions(mode="off")
    whole = predictor.segment_boxes(image.path, boxes)
    iou_tiled = [mask_iou(t.mask, m) for t, m in zip(truth, tiled.masks, strict=True)]
    iou_whole = [mask_iou(t.mask, m) for t, m in zip(truth, whole.masks, strict=True)]
    print(f"box prompt mask IoU: region {np.round(iou_tiled, 2)}, whole image {np.round(iou_whole, 2)}")
    assert tiled.image_size == (1200, 1600) and all(m.image_size == (1200, 1600) for m in tiled.masks)
    assert np.mean(iou_tiled) >= 0.6 and np.mean(iou_tiled) > np.mean(iou_whole) + 0.1
