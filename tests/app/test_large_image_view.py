"""Large images in the window: the view pyramid on disk, its tiles read a few at a time, and the real window
showing, zooming and editing an image too large to decode whole; stale, damaged and unreadable cases.

Images here are a little over the tiled view's threshold on one side and short on the other, so that every
path runs in seconds; bench/bench_large_view.py times the 20,000 x 20,000 case.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from app.project.view_pyramid import (
    TILE_SIZE,
    TILED_VIEW_MIN_SIDE,
    Pyramid,
    PyramidError,
    build,
    level_count,
    level_size,
    main,
    pyramid_folder,
    read_preview,
    shown_tiled,
    tile_grid,
    tile_name,
)
from app.ui.main_window import MainWindow
from app.workers.image_loader import read_thumbnail
from app.workers.view_tiles import LargeImageTiles
from maskrcnn_core.masks import rle_to_mask

WIDTH, HEIGHT = TILED_VIEW_MIN_SIDE + 700, 1100


def _scene(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """A smooth random backdrop with sharp discs: JPEG keeps it close, and misplaced tiles show."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 50 + 1, width // 50 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.circle(
            image, (x, y), int(rng.integers(10, 60)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1
        )
    return image


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return _scene()


@pytest.fixture
def tiff(tmp_path, scene) -> Path:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, scene, tile=(256, 256), compression="deflate", photometric="rgb")
    return path


@pytest.fixture
def jpeg(tmp_path, scene) -> Path:
    path = tmp_path / "aerial.jpg"
    _write_jpeg(path, scene)
    return path


def test_the_pyramid_of_a_jpeg_keeps_full_resolution_exactly_and_halves_every_level(tmp_path, jpeg):
    decoded = cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB)
    progress = []
    pyramid = build(jpeg, tmp_path / "pyramid", lambda done, total: progress.append((done, total)))
    assert shown_tiled((HEIGHT, WIDTH)) and not shown_tiled((TILED_VIEW_MIN_SIDE, TILED_VIEW_MIN_SIDE))
    assert pyramid.size == (HEIGHT, WIDTH) and pyramid.levels == level_count((HEIGHT, WIDTH)) == 4
    assert pyramid.level0_cached  # a JPEG cannot be read a region at a time
    assert progress[-1] == (3, 3) and [d for d, _ in progress] == [1, 2, 3]
    # level 0: the decoded file, pixel for pixel (lossless tiles), every tile in its place
    rows, cols = tile_grid(pyramid.size, 0)
    for row, col in [(0, 0), (1, 7), (rows - 1, cols - 1)]:
        tile = pyramid.cached_tile(0, row, col)
        y0, x0 = row * TILE_SIZE, col * TILE_SIZE
        np.testing.assert_array_equal(tile, decoded[y0 : y0 + TILE_SIZE, x0 : x0 + TILE_SIZE])
    # level 1 and the overview: the image reduced by area, within JPEG's rounding
    half = cv2.resize(decoded, level_size(pyramid.size, 1)[::-1], interpolation=cv2.INTER_AREA)
    tile = pyramid.cached_tile(1, 0, 3)
    reference = half[:TILE_SIZE, 3 * TILE_SIZE : 4 * TILE_SIZE]
    assert tile.shape == reference.shape
    assert np.abs(tile.astype(int) - reference).mean() < 2.0
    overview = pyramid.overview()
    assert overview.shape[:2] == level_size(pyramid.size, pyramid.levels - 1)
    assert max(overview.shape[:2]) <= 2048
    eighth = cv2.resize(decoded, overview.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(overview.astype(int) - eighth).mean() < 2.0


def test_a_tiled_tiff_is_read_from_the_file_at_full_resolution(qtbot, tmp_path, tiff, scene):
    previews = []  # what the window may show while the build runs: the rows read so far, the rest grey
    pyramid = build(
        tiff, tmp_path / "pyramid", lambda done, total: previews.append(read_preview(tmp_path / "pyramid"))
    )
    assert previews[0] is not None and previews[0].shape[:2] == level_size((HEIGHT, WIDTH), 3)
    top_rows = round(TILE_SIZE * previews[0].shape[1] / WIDTH)
    reduced = cv2.resize(scene[:TILE_SIZE], (previews[0].shape[1], top_rows), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(previews[0][:top_rows], reduced)
    assert (previews[0][top_rows:] == 40).all()
    assert read_preview(tmp_path / "pyramid") is None  # gone once the pyramid is whole
    assert not pyramid.level0_cached and not (tmp_path / "pyramid" / "0").exists()
    tiles = LargeImageTiles(tiff, tmp_path / "pyramid", (HEIGHT, WIDTH))
    with qtbot.waitSignal(tiles.pyramidReady, timeout=5000):
        tiles.start()
    arrived = {}
    tiles.tileReady.connect(lambda level, row, col, image: arrived.__setitem__((level, row, col), image))
    rows, cols = tile_grid((HEIGHT, WIDTH), 0)
    tiles.request(0, rows - 1, cols - 1)  # the corner tile: cut short on both sides
    tiles.request(2, 0, 1)
    qtbot.waitUntil(lambda: len(arrived) == 2, timeout=5000)
    corner = arrived[(0, rows - 1, cols - 1)]
    y0, x0 = (rows - 1) * TILE_SIZE, (cols - 1) * TILE_SIZE
    assert (corner.height(), corner.width()) == (HEIGHT - y0, WIDTH - x0)
    pixels = np.frombuffer(corner.constBits(), np.uint8).reshape(corner.height(), corner.bytesPerLine())
    np.testing.assert_array_equal(
        pixels[:, : 3 * corner.width()].reshape(corner.height(), -1, 3), scene[y0:, x0:]
    )
    tiles.close()


def test_a_pyramid_is_stale_once_its_file_changes_and_a_killed_build_leaves_nothing_whole(tmp_path, jpeg):
    folder = tmp_path / "pyramid"
    build(jpeg, folder)
    assert Pyramid.open(folder, jpeg) is not None
    _write_jpeg(jpeg, _scene(seed=1))  # the file changes on disk
    os.utime(jpeg, ns=(0, 10**18))  # a new modification time whatever the clock's resolution
    assert Pyramid.open(folder, jpeg) is None
    # a build killed part way leaves its temporary folder only: nothing Pyramid.open accepts
    partial = folder.with_name("pyramid.partial-99999")
    shutil.copytree(folder, partial)
    (partial / "manifest.json").unlink()
    assert Pyramid.open(partial, jpeg) is None
    rebuilt = build(jpeg, folder)  # and the next build clears what it left
    assert not partial.exists() and rebuilt.is_current()
    # a damaged tile is an error naming the tile, not a crash
    (folder / tile_name(1, 0, 0)).write_bytes(b"not a jpeg")
    with pytest.raises(PyramidError, match="damaged"):
        rebuilt.cached_tile(1, 0, 0)


def test_a_file_too_large_to_decode_here_is_refused_in_one_line_but_a_tiff_needs_no_decoding(
    tmp_path, jpeg, tiff
):
    with pytest.raises(PyramidError, match=r"needs it decoded whole once, about .* GB of memory, and 0.0 GB"):
        build(jpeg, tmp_path / "a", memory_available=1000)
    assert not (tmp_path / "a").exists()
    assert build(tiff, tmp_path / "b", memory_available=1000).is_current()


def test_the_build_command_prints_progress_or_one_error_line(tmp_path, jpeg, capsys):
    assert main([str(jpeg), str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("progress 1 ") and out[-1] == "done"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg.read_bytes()[:5000])  # the header survives, the pixels do not
    assert main([str(broken), str(tmp_path / "bad")]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("error: ") and "broken.jpg" in line
    assert not (tmp_path / "bad").exists()


def test_a_large_image_gets_a_thumbnail_without_being_decoded_whole(jpeg, tmp_path, scene):
    thumb, size = read_thumbnail(jpeg)
    assert size == (HEIGHT, WIDTH) and max(thumb.shape[:2]) == 96
    png = tmp_path / "big.png"
    cv2.imwrite(str(png), scene)
    thumb, size = read_thumbnail(png)  # no reduced read for a PNG: a grey stand-in of the right shape
    assert size == (HEIGHT, WIDTH) and thumb.shape[1] == 96 and (thumb == thumb.flat[0]).all()


# --------------------------------------------------------------------------------------------- the window
def _thumbnail_colours(model) -> int:  # noqa: ANN001 - the browser's list model
    """How many different colours the first image's thumbnail in the browser has (a stand-in has one)."""
    pixmap = model.index(0, 0).data(Qt.ItemDataRole.DecorationRole)
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), np.uint32).reshape(image.height(), -1)
    return len(np.unique(pixels))


def _window(qtbot, folder: Path) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_folder(folder)
    return window


@pytest.mark.gui
def test_the_window_shows_zooms_and_edits_a_large_image_from_its_tiles(qtbot, tmp_path, scene):
    folder = tmp_path / "images"
    folder.mkdir()
    _write_jpeg(folder / "aerial.jpg", scene)
    window = _window(qtbot, folder)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.large_image() is not None, timeout=10_000)
    item = canvas.large_image()
    qtbot.waitUntil(item.has_overview, timeout=10_000)  # the quick overview of a JPEG: before the pyramid
    tiles = item.tiles
    assert tiles.wait_for_build(60_000)
    qtbot.waitUntil(lambda: tiles.pyramid is not None, timeout=5000)
    doc = window.document
    image_id = doc.current_image_id
    assert doc.image_error(image_id) is None
    assert (pyramid_folder(doc.store.db_path.parent, folder / "aerial.jpg") / "manifest.json").is_file()
    # zoom to one image pixel per screen pixel around a point far to the right: its level-0 tiles arrive
    canvas.resetTransform()
    canvas.centerOn(QPointF(7800, 600))
    qtbot.waitUntil(lambda: any(k[0] == 0 for k in item.cached_tiles()), timeout=10_000)
    qtbot.wait(300)
    shot = canvas.viewport().grab().toImage()
    centre = canvas.mapFromScene(QPointF(7800, 600))
    color = shot.pixelColor(centre.x(), centre.y())
    decoded = cv2.cvtColor(cv2.imread(str(folder / "aerial.jpg")), cv2.COLOR_BGR2RGB)
    expected = decoded[600, 7800]
    assert np.abs(np.array([color.red(), color.green(), color.blue()]) - expected).max() <= 3
    # a brush stroke there makes an instance at full-resolution coordinates
    window.editor.set_tool("brush")
    start, end = canvas.mapFromScene(QPointF(7780, 600)), canvas.mapFromScene(QPointF(7820, 600))
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas.viewport(), end)
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    qtbot.waitUntil(lambda: len(doc.instances(image_id)) == 1, timeout=5000)
    mask = rle_to_mask(doc.instances(image_id)[0].rle)
    assert mask.image_size == (HEIGHT, WIDTH)
    for x in (7780, 7800, 7820):  # the stroke's pixels, where they were drawn
        assert mask.mask[600 - mask.y0, x - mask.x0]
    centre_x = mask.x0 + mask.mask.shape[1] / 2
    centre_y = mask.y0 + mask.mask.shape[0] / 2
    assert abs(centre_x - 7800) < 3 and abs(centre_y - 600) < 3
    window.close()


@pytest.mark.gui
def test_a_large_image_that_cannot_be_decoded_says_why_and_the_window_stays_up(qtbot, tmp_path, scene):
    folder = tmp_path / "images"
    folder.mkdir()
    _write_jpeg(folder / "a.jpg", scene[:600, :800])
    good = (folder / "a.jpg").read_bytes()
    _write_jpeg(folder / "b_truncated.jpg", scene)
    data = (folder / "b_truncated.jpg").read_bytes()
    (folder / "b_truncated.jpg").write_bytes(data[:4000])
    window = _window(qtbot, folder)
    doc = window.document
    bad = doc.store.image_by_name("b_truncated.jpg").id
    doc.set_current_image(bad)
    qtbot.waitUntil(
        lambda: "b_truncated.jpg" in window.canvas.message() and "\n" in window.canvas.message(),
        timeout=30_000,
    )
    qtbot.waitUntil(
        lambda: "corrupt" in window.canvas.message() or "truncated" in window.canvas.message(), timeout=30_000
    )
    doc.set_current_image(doc.store.image_by_name("a.jpg").id)
    qtbot.waitUntil(window.canvas.has_image, timeout=5000)
    assert (folder / "a.jpg").read_bytes() == good
    window.close()


@pytest.mark.gui
def test_a_large_image_changed_on_disk_while_shown_is_shown_again_from_a_new_view(qtbot, tmp_path, scene):
    folder = tmp_path / "images"
    folder.mkdir()
    path = folder / "scan.tif"
    tifffile.imwrite(path, scene, tile=(256, 256), photometric="rgb")
    window = _window(qtbot, folder)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.large_image() is not None, timeout=10_000)
    first = canvas.large_image()
    assert first.tiles.wait_for_build(60_000)
    qtbot.waitUntil(lambda: first.tiles.pyramid is not None, timeout=5000)
    # a flat TIFF has no quick overview: its thumbnail, grey until now, comes from the view's overview
    model = window.browser.source
    qtbot.waitUntil(lambda: _thumbnail_colours(model) > 50, timeout=5000)
    changed = scene[::-1].copy()
    tifffile.imwrite(path, changed, tile=(256, 256), photometric="rgb")
    os.utime(path, ns=(0, 10**18))
    canvas.resetTransform()
    canvas.centerOn(QPointF(4000, 500))
    canvas.viewport().update()
    # the next tile read notices, and the image is shown again from a view of the new file
    qtbot.waitUntil(
        lambda: canvas.large_image() is not None and canvas.large_image() is not first, timeout=10_000
    )
    second = canvas.large_image()
    assert second.tiles.wait_for_build(60_000)
    qtbot.waitUntil(lambda: second.tiles.pyramid is not None, timeout=5000)
    assert second.tiles.pyramid.is_current()
    arrived = []
    second.tiles.tileReady.connect(lambda *tile: arrived.append(tile))
    second.tiles.request(0, 0, 0)
    qtbot.waitUntil(lambda: any(t[:3] == (0, 0, 0) for t in arrived), timeout=5000)
    image = next(t[3] for t in arrived if t[:3] == (0, 0, 0))
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    np.testing.assert_array_equal(
        pixels[:, : 3 * image.width()].reshape(image.height(), -1, 3), changed[:TILE_SIZE, :TILE_SIZE]
    )
    window.close()


@pytest.mark.gui
@pytest.mark.slow
def test_auto_segment_runs_a_large_image_in_tiles_with_progress_and_cancel(qtbot, tmp_path):
    from maskrcnn_core.data.synthetic import generate_large_scene

    generate_large_scene(tmp_path, height=1100, width=WIDTH, num_objects=60, seed=2)
    folder = tmp_path / "images"
    window = _window(qtbot, folder)  # the bundled demo model, for real
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=120_000)
    doc = window.document
    (image,) = doc.images()
    seen: list[tuple[int, int]] = []
    window.segmentation.tileProgressChanged.connect(lambda done, total: seen.append((done, total)))
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=120_000) as finished:
        window.segment_all_action.trigger()
        qtbot.waitUntil(lambda: len(seen) >= 2, timeout=60_000)
        assert "tile" in window.run_progress.label.text()
        window.run_progress.cancelRequested.emit()
    assert finished.args[1] is True  # cancelled part way through the image's tiles
    assert seen[0][1] == seen[-1][1] > seen[-1][0]
    assert doc.instances(image.id) == []  # a half-segmented image stores nothing
    # run to the end: the image's instances, at full-resolution coordinates
    seen.clear()
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=300_000) as finished:
        window.segment_all_action.trigger()
    assert finished.args[1] is False and seen[-1][0] == seen[-1][1]
    found = doc.instances(image.id)
    assert len(found) >= 20
    assert any(rle_to_mask(i.rle).x0 > TILED_VIEW_MIN_SIDE - 1000 for i in found)  # found far to the right
    # the box prompt, dragged around an object far to the right at full zoom, segments it from its region
    from maskrcnn_core.data.coco import load_coco
    from maskrcnn_core.engine.tiling import mask_iou

    data, _ = load_coco(next(tmp_path.glob("*.json")), folder)
    target = max((a for a in data.images[0].annotations if a.bbox[0] > 7000), key=lambda a: a.area)
    x1, y1, x2, y2 = target.bbox
    canvas = window.canvas
    canvas.resetTransform()
    canvas.zoomChanged.emit(canvas.zoom_factor())
    canvas.centerOn(QPointF((x1 + x2) / 2, (y1 + y2) / 2))
    window.editor.set_tool("box")
    before = {i.id for i in doc.instances(image.id)}
    start, end = canvas.mapFromScene(QPointF(x1 - 4, y1 - 4)), canvas.mapFromScene(QPointF(x2 + 4, y2 + 4))
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(canvas.viewport(), end)
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=end)
    qtbot.waitUntil(lambda: len(doc.instances(image.id)) == len(before) + 1, timeout=60_000)
    (added,) = [i for i in doc.instances(image.id) if i.id not in before]
    assert mask_iou(rle_to_mask(added.rle), target.mask) > 0.6
    window.close()


def test_instances_of_a_400_megapixel_image_export_to_coco_rle_and_back_exactly(tmp_path):
    import json

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from app.__main__ import main as studio
    from maskrcnn_core.masks import mask_to_rle
    from maskrcnn_core.types import CroppedMask

    size = 20_000
    folder = tmp_path / "images"
    folder.mkdir()
    # A tiled TIFF of black tiles, compressed: 5 MB on disk, where an uncompressed one takes 1.2 GB of a CI
    # machine's disk for the rest of the session.
    black_tile = np.zeros((512, 512, 3), np.uint8)
    tiles_per_side = -(-size // 512)
    tiles = (black_tile for _ in range(tiles_per_side**2))
    tifffile.imwrite(
        folder / "slide.tif",
        data=tiles,
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(512, 512),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 1},
    )
    yy, xx = np.mgrid[0:300, 0:420]
    ring = ((yy - 150) ** 2 + (xx - 210) ** 2 < 140**2) & ((yy - 150) ** 2 + (xx - 210) ** 2 > 60**2)
    masks = [
        CroppedMask(19_500, 19_650, ring, (size, size)),  # at the far corner
        CroppedMask(7, 12_001, ring[:, ::-1].copy(), (size, size)),
        CroppedMask(10_000, 0, np.ones((5, 9000), bool), (size, size)),  # a long thin strip
    ]
    rles = [mask_to_rle(m) for m in masks]
    truth = {
        "images": [{"id": 1, "file_name": "slide.tif", "height": size, "width": size}],
        "categories": [{"id": 1, "name": "cell"}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": r["size"], "counts": r["counts"]},
                "area": int(m.area),
                "bbox": [float(v) for v in mask_utils.toBbox(r)],
                "iscrowd": 0,
            }
            for i, (r, m) in enumerate(zip(rles, masks, strict=True))
        ],
    }
    source = tmp_path / "truth.json"
    source.write_text(json.dumps(truth))
    assert studio(["import", str(folder), str(source)]) == 0
    out = tmp_path / "export.json"
    assert studio(["export", str(folder), "--out", str(out), "--format", "rle"]) == 0
    coco = COCO(str(out))  # pycocotools' own reader loads it
    (image,) = coco.loadImgs(coco.getImgIds())
    assert (image["height"], image["width"]) == (size, size)
    exported = sorted(coco.loadAnns(coco.getAnnIds()), key=lambda a: a["bbox"][1])
    expected = sorted(truth["annotations"], key=lambda a: a["bbox"][1])
    for got, want in zip(exported, expected, strict=True):
        assert got["segmentation"]["counts"] == want["segmentation"]["counts"]  # the same pixels, exactly
        assert got["area"] == want["area"] and np.allclose(got["bbox"], want["bbox"])
        rle = coco.annToRLE(got)
        assert mask_utils.iou([rle], [want["segmentation"]], [0])[0, 0] == 1.0


@pytest.mark.slow
def test_inference_reads_a_large_pngs_view_pyramid_and_finds_exactly_what_the_file_gives(tmp_path):
    from app.project.view_pyramid import PyramidRegions
    from app.resources import DEMO_MODEL
    from maskrcnn_core.data.synthetic import generate_large_scene
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.tiling import TileOptions
    from maskrcnn_core.image_io import read_image

    generate_large_scene(tmp_path, height=1100, width=2100, num_objects=30, seed=5, image_format="png")
    (path,) = sorted((tmp_path / "images").iterdir())
    project = tmp_path / "project"
    assert PyramidRegions.find(project, path) is None  # no pyramid yet: the file is read
    build(path, pyramid_folder(project, path))
    regions = PyramidRegions.find(project, path)
    assert regions is not None and regions.size == (1100, 2100)
    np.testing.assert_array_equal(regions.read(300, 500, 1700, 1100), read_image(path)[500:1100, 300:1700])
    predictor = Predictor(DEMO_MODEL, device="cpu")
    predictor.tiling = TileOptions()  # auto, with the full-image pass (read reduced from the pyramid)
    from_file, from_pyramid = predictor.predict([path, regions])
    assert len(from_file) > 10 and len(from_pyramid) == len(from_file)
    np.testing.assert_allclose(from_pyramid.boxes, from_file.boxes, atol=0.5)
    box = from_file.boxes[0]
    prompt_file = predictor.segment_boxes(path, box[None])
    prompt_pyramid = predictor.segment_boxes(regions, box[None])
    np.testing.assert_array_equal(prompt_pyramid.masks[0].to_full(), prompt_file.masks[0].to_full())
