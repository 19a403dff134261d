"""The window on a 20,000 x 20,000 image: first paint, pan and zoom repaints, a brush stroke at full zoom, and
the window's memory, for a pyramidal tiled TIFF, a flat tiled TIFF and a JPEG, each opened twice (the view
pyramid built, then cached).

    .venv/bin/python bench/bench_large_view.py [--size 20000] [--data /tmp/bench-large-view]

Every window runs in its own process (offscreen Qt, the bundled demo model loaded as a user has it), so its
peak resident memory is the window's own. The baseline, in the same run and its own process, is what the
window did before large images were tiled: decode the whole file and make one QImage of it (its time is
the earliest a first paint could come, and its memory the least the window would have held).

- first paint: from ``open_folder`` to the canvas painted with the overview in it.
- view built: from ``open_folder`` until every level can be served (the first time: the build).
- repaint: ``viewport().repaint()`` after each step (a 200-pixel pan at one image pixel per screen pixel, a
  zoom step in or out), tiles in memory or not: what the user waits for before the screen changes.
- brush move: one mouse move of the brush at full zoom, with the repaint it causes; brush release: the
  stroke rasterised on its own box and committed to the project file, overlay redrawn.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)


def make_images(folder: Path, size: int) -> dict[str, Path]:
    """A smooth random scene with sharp discs, as a pyramidal tiled TIFF, a flat tiled TIFF and a JPEG."""
    import cv2
    import numpy as np
    import tifffile

    paths = {
        "tiff (pyramidal)": folder / "pyramidal" / "slide.tif",
        "tiff (flat)": folder / "flat" / "slide.tif",
        "jpeg": folder / "jpeg" / "aerial.jpg",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size // 100, size // 100, 3), dtype=np.uint8)
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(size // 10):
        x, y = int(rng.integers(0, size)), int(rng.integers(0, size))
        cv2.circle(
            image, (x, y), int(rng.integers(10, 40)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1
        )
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(paths["jpeg"]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    tiling = {"tile": (512, 512), "compression": "deflate", "photometric": "rgb"}
    tifffile.imwrite(paths["tiff (flat)"], image, **tiling)
    levels = []
    level = image
    while max(level.shape[:2]) > 1024:
        level = cv2.resize(
            level, (-(-level.shape[1] // 2), -(-level.shape[0] // 2)), interpolation=cv2.INTER_AREA
        )
        levels.append(level)
    with tifffile.TiffWriter(paths["tiff (pyramidal)"], bigtiff=True) as tif:
        tif.write(image, subifds=len(levels), **tiling)
        for level in levels:
            tif.write(level, subfiletype=1, **tiling)
    return paths


def baseline(path: Path) -> dict:
    """The old way: decode the whole file and make one QImage of it."""
    from PIL import Image

    from app.workers.image_loader import rgb_to_qimage
    from maskrcnn_core.image_io import read_image

    Image.MAX_IMAGE_PIXELS = None  # the old way, with the decompression-bomb guard lifted for the file
    start = time.perf_counter()
    image = rgb_to_qimage(read_image(path, max_pixels=None))
    elapsed = time.perf_counter() - start
    assert not image.isNull()
    return {"decode_s": elapsed, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def one_window(path: Path, brush: bool, segment: bool = False) -> dict:
    """Open ``path``'s folder in a real window and time what the user waits for."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from window_wait import wait_until as wait

    from app.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1500, 900)
    window.show()
    app.processEvents()
    out: dict = {}

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    assert window.open_folder(path.parent)
    canvas = window.canvas
    wait(lambda: canvas.large_image() is not None and canvas.large_image().has_overview())
    canvas.viewport().repaint()
    out["first_paint_s"] = time.perf_counter() - start
    item = canvas.large_image()
    wait(lambda: item.tiles.pyramid is not None)
    out["view_built_s"] = time.perf_counter() - start
    wait(lambda: window.segmentation.model is not None)  # as a user has it: the model loaded beside
    viewport = canvas.viewport()

    def timed_repaint() -> float:
        t = time.perf_counter()
        viewport.repaint()
        return (time.perf_counter() - t) * 1000

    out["repaint_fit_ms"] = statistics.median(timed_repaint() for _ in range(10))
    # full zoom in the middle, then pans: the first pass meets missing tiles, the second has them
    canvas.resetTransform()
    canvas.zoomChanged.emit(canvas.zoom_factor())
    canvas.centerOn(QPointF(path_size(path) / 2, path_size(path) / 2))
    pans_cold, pans_warm = [], []
    bar = canvas.horizontalScrollBar()
    for _ in range(20):
        bar.setValue(bar.value() + 200)
        pans_cold.append(timed_repaint())
    wait(lambda: not item.tiles._pending)  # noqa: SLF001 - the bench waits for the reads it caused
    for _ in range(20):
        bar.setValue(bar.value() - 200)
        pans_warm.append(timed_repaint())
        app.processEvents()
    out["pan_repaint_ms_median"] = statistics.median(pans_cold + pans_warm)
    out["pan_repaint_ms_max"] = max(pans_cold + pans_warm)
    zooms = []
    for step in [canvas.zoom_out] * 12 + [canvas.zoom_in] * 12:
        step()
        zooms.append(timed_repaint())
        app.processEvents()
    out["zoom_repaint_ms_median"] = statistics.median(zooms)
    out["zoom_repaint_ms_max"] = max(zooms)
    out["peak_view_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if segment:  # before the brush: Auto-segment all skips an image a person has corrected
        # tiled, through the pyramid where the file cannot be read in parts
        finished: list[bool] = []
        tiles_seen: list[int] = []
        window.segmentation.jobFinished.connect(lambda *_a: finished.append(True))
        window.segmentation.tileProgressChanged.connect(lambda done, total: tiles_seen.append(total))
        t = time.perf_counter()
        window.segment_all_action.trigger()
        wait(lambda: bool(finished), timeout=3600)
        out["segment_s"] = time.perf_counter() - t
        out["segment_tiles"] = tiles_seen[-1] if tiles_seen else 0
        out["segment_instances"] = len(window.document.instances(window.document.current_image_id))
        out["peak_after_segment_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if brush:
        canvas.resetTransform()
        canvas.zoomChanged.emit(canvas.zoom_factor())
        canvas.centerOn(QPointF(path_size(path) / 2, path_size(path) / 2))
        wait(lambda: not item.tiles._pending)  # noqa: SLF001
        window.editor.set_tool("brush")
        instances_before = len(window.document.instances(window.document.current_image_id))
        centre = viewport.rect().center()
        QTest.mousePress(viewport, Qt.MouseButton.LeftButton, pos=centre)
        moves = []
        for i in range(1, 41):
            t = time.perf_counter()
            QTest.mouseMove(viewport, centre + type(centre)(3 * i, (i % 7) - 3))
            viewport.repaint()
            moves.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=centre + type(centre)(120, 0))
        viewport.repaint()
        out["brush_release_ms"] = (time.perf_counter() - t) * 1000
        out["brush_move_ms_median"] = statistics.median(moves)
        out["brush_move_ms_max"] = max(moves)
        assert len(window.document.instances(window.document.current_image_id)) == instances_before + 1
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_before_open_mb"] = rss_before
    window.close()
    return out


def path_size(path: Path) -> int:
    from maskrcnn_core.image_io import image_size

    return image_size(path)[1]


def run_child(*args: str) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=1800, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child {args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench-large-view"))
    parser.add_argument("--child", choices=["window", "window-brush", "window-segment", "baseline"])
    parser.add_argument("--segment", action="store_true", help="also time Auto-segment all (cached open)")
    parser.add_argument("--only", help="one image kind: 'tiff (pyramidal)', 'tiff (flat)' or 'jpeg'")
    parser.add_argument("--path", type=Path)
    args = parser.parse_args()
    if args.child == "baseline":
        print(json.dumps(baseline(args.path)))
        return
    if args.child:
        print(
            json.dumps(
                one_window(args.path, brush=args.child != "window", segment=args.child == "window-segment")
            )
        )
        return
    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.2f}")
    paths = make_images(args.data / str(args.size), args.size)
    rows = []
    for name, path in paths.items():
        if args.only and name != args.only:
            continue
        shutil.rmtree(path.parent / ".maskrcnn-studio", ignore_errors=True)  # the first open builds
        base = run_child("--child", "baseline", "--path", str(path))
        first = run_child("--child", "window", "--path", str(path))
        again = run_child(
            "--child", "window-segment" if args.segment else "window-brush", "--path", str(path)
        )
        rows.append((name, base, first, again))
        print(json.dumps({"image": name, "baseline": base, "first_open": first, "cached": again}), flush=True)
    print(f"\n{args.size}x{args.size}, load average now {os.getloadavg()[0]:.2f}")
    print(
        "| image | open | first paint | view built | pan repaint median / max | zoom repaint median / max "
        "| window peak memory | old way: decode + QImage, peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, base, first, again in rows:
        for label, r in (("first", first), ("cached", again)):
            print(
                f"| {name} | {label} | {r['first_paint_s']:.2f} s | {r['view_built_s']:.1f} s "
                f"| {r['pan_repaint_ms_median']:.1f} / {r['pan_repaint_ms_max']:.1f} ms "
                f"| {r['zoom_repaint_ms_median']:.1f} / {r['zoom_repaint_ms_max']:.1f} ms "
                f"| {r['peak_view_mb']:.0f} MB ({r['peak_before_open_mb']:.0f} before the image) "
                f"| {base['decode_s']:.1f} s, {base['peak_mb']:.0f} MB |"
            )
    print(
        "\n| image | brush move median / max (at full zoom) | brush release (rasterise + commit + redraw) |"
    )
    print("|---|---|---|")
    for name, _base, _first, again in rows:
        print(
            f"| {name} | {again['brush_move_ms_median']:.1f} / {again['brush_move_ms_max']:.1f} ms "
            f"| {again['brush_release_ms']:.0f} ms |"
        )
    if args.segment:
        print("\n| image | Auto-segment all: time | tiles | instances | window peak memory during it |")
        print("|---|---|---|---|---|")
        for name, _base, _first, again in rows:
            print(
                f"| {name} | {again['segment_s']:.0f} s | {again['segment_tiles']} "
                f"| {again['segment_instances']} | {again['peak_after_segment_mb']:.0f} MB |"
            )


if __name__ == "__main__":
    main()
