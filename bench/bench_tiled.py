"""Tiled inference on large synthetic scenes against whole-image inference, with the bundled demo model.

For each scene size, one scene of small shapes (20-60 px, the size the demo model learnt them at; one per
400 x 400 px, a few hundred on 8000 x 8000) is drawn as a tiled TIFF. Each mode then runs in a fresh
process, so peak memory is that run's alone: load the model, warm up on a small image, predict the scene
once. ``whole``: the Predictor as before (the image resized to the model's 192-256 px); ``tiled``:
``TileOptions()`` (auto: 512 px tiles, 128 px overlap, at the image's own scale). Mask and box AP come
from pycocotools on the same scene (up to 10,000 detections per image counted: the scenes hold hundreds
of objects, more than COCO's default 100). Reported: AP, seconds, seconds per megapixel, and the peak
resident memory above what the process held once the model was loaded.

    .venv/bin/python bench/bench_tiled.py [--sizes 2000x2000,4000x4000] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_DETECTIONS = 10_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(mode: str, image: str, out: str, threads: int) -> None:
    """One measurement in this fresh process; writes the COCO results and the figures to ``out``."""
    import numpy as np
    import torch

    from app.resources import DEMO_MODEL
    from maskrcnn_core.data.coco import predictions_to_coco_results
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.tiling import TileOptions

    torch.set_num_threads(threads)
    predictor = Predictor(DEMO_MODEL, device="cpu", tiling=TileOptions() if mode == "tiled" else None)
    warm = np.random.default_rng(0).integers(0, 256, size=(600, 800, 3), dtype=np.uint8)
    predictor.predict([warm])  # the first call's one-off costs (compiling, allocator) left out
    loaded = _rss_bytes()
    start = time.perf_counter()
    (prediction,) = predictor.predict([image])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if not prediction.ok:
        raise SystemExit(f"{image}: {prediction.error}")
    results = predictions_to_coco_results([prediction], [1])
    Path(out).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_extra_bytes": max(0, peak - loaded),
                "detections": len(prediction),
                "backend": predictor.description,
                "results": results,
            }
        )
    )


def _average_precision(gt_json: Path, results: list[dict], kind: str) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        evaluation = COCOeval(gt, gt.loadRes(results), kind)
        evaluation.params.maxDets = [10, 100, MAX_DETECTIONS]
        evaluation.evaluate()
        evaluation.accumulate()
    # AP over IoU 0.5:0.95 at the most detections per image: summarize()'s first figure would read it at
    # 100 detections per image, whatever maxDets says, and cap a scene of hundreds of objects
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, area "all"
    return float(precision[precision > -1].mean()) if (precision > -1).any() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000x2000,4000x4000", help="scene sizes HxW, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child, threads=args.threads)
        return

    from maskrcnn_core.data.synthetic import LARGE_SCENE_AREA_PER_OBJECT, generate_large_scene

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {args.threads}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tiled-") as tmp:
        for size in args.sizes.split(","):
            height, width = (int(v) for v in size.lower().split("x"))
            folder = Path(tmp) / size
            gt_json = generate_large_scene(
                folder,
                height=height,
                width=width,
                num_objects=height * width // LARGE_SCENE_AREA_PER_OBJECT,
                seed=args.seed,
            )
            image = next((folder / "images").iterdir())
            objects = len(json.loads(gt_json.read_text())["annotations"])
            for mode in ("whole", "tiled"):
                out = Path(tmp) / f"{size}-{mode}.json"
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                command = [
                    sys.executable,
                    __file__,
                    "--threads",
                    str(args.threads),
                    "--child",
                    mode,
                    str(image),
                    str(out),
                ]
                subprocess.run(command, check=True, env=env)
                figures = json.loads(out.read_text())
                megapixels = height * width / 1e6
                row = {
                    "size": f"{height}x{width}",
                    "objects": objects,
                    "mode": mode,
                    "mask_ap": _average_precision(gt_json, figures["results"], "segm"),
                    "box_ap": _average_precision(gt_json, figures["results"], "bbox"),
                    "detections": figures["detections"],
                    "seconds": figures["seconds"],
                    "seconds_per_megapixel": figures["seconds"] / megapixels,
                    "peak_extra_mb": figures["peak_extra_bytes"] / 2**20,
                    "backend": figures["backend"],
                }
                rows.append(row)
                print(
                    f"{row['size']:>11} {objects:4d} objects  {mode:5s}  mask AP {row['mask_ap']:.3f}  "
                    f"box AP {row['box_ap']:.3f}  {row['detections']:5d} detections  "
                    f"{row['seconds']:7.1f} s  {row['seconds_per_megapixel']:.2f} s/MP  "
                    f"peak +{row['peak_extra_mb']:.0f} MB  ({row['backend']})",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
