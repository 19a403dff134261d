"""CPU inference, end to end: our Predictor against torchvision's own pipeline on the same weights.

Each measurement runs in a fresh process (so peak memory is that run's alone): load the model and the
photo, then time one prediction from the decoded image to final binary masks, and read the peak resident
memory above what the process held before it. torchvision: ``model([image])`` then ``masks > 0.5`` on its
full-size float masks, once as is and once with the allocator setting the Predictor makes on CPU
(``maskrcnn_core.engine.allocator``), to show how much of the gain that setting alone is. Ours:
``Predictor.predict`` (masks cropped to their boxes). Both use the same
checkpoint: torchvision's ResNet-50-FPN COCO layout with seeded, calibrated weights (tests/reference_model.py)
that detect ~100 objects on a real photo. Detections are compared box by box.

    .venv/bin/python bench/bench_predict_cpu.py [--threads 2] [--sizes 4000x3000,1333x800] [--repeats 3]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "tests"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(mode: str, weights: str, image_path: str, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from PIL import Image

    image = np.asarray(Image.open(image_path).convert("RGB"))
    if mode == "torchvision-reuse":
        from maskrcnn_core.engine.allocator import reuse_freed_memory

        reuse_freed_memory()  # what the Predictor sets on CPU: how much of the gain is the allocator's
    if mode.startswith("torchvision"):
        from reference_model import build_reference

        model = build_reference()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
        before = _rss_bytes()
        start = time.perf_counter()
        with torch.no_grad():
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
            out = model([tensor])[0]
            masks = (out["masks"][:, 0] > 0.5).numpy()
        elapsed = time.perf_counter() - start
        boxes, scores, labels = out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy()
        areas = masks.reshape(len(masks), -1).sum(1)
    else:
        from maskrcnn_core import Predictor

        predictor = Predictor(weights, device="cpu", batch_size=1)
        before = _rss_bytes()
        start = time.perf_counter()
        prediction = predictor.predict([image], score_thresh=0.05)[0]
        elapsed = time.perf_counter() - start
        boxes, scores, labels = prediction.boxes, prediction.scores, prediction.labels
        areas = np.array([m.area for m in prediction.masks])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "seconds": elapsed,
        "extra_bytes": max(0, peak - before),
        "boxes": boxes.tolist(),
        "scores": scores.tolist(),
        "labels": labels.tolist(),
        "mask_areas": [int(a) for a in areas],
    }


def compare(a: dict, b: dict) -> str:
    import numpy as np

    if len(a["boxes"]) != len(b["boxes"]):
        return f"{len(a['boxes'])} vs {len(b['boxes'])} detections"
    if not a["boxes"]:
        return "both empty"
    box_diff = np.abs(np.array(a["boxes"]) - np.array(b["boxes"])).max()
    score_diff = np.abs(np.array(a["scores"]) - np.array(b["scores"])).max()
    same_labels = a["labels"] == b["labels"]
    area_a, area_b = np.array(a["mask_areas"]), np.array(b["mask_areas"])
    # masks of a random-weight model have large regions at probability ~0.5, where float rounding decides
    # a pixel; compare the total area rather than each tiny mask's
    area_diff = np.abs(area_a - area_b).sum() / max(area_b.sum(), 1)
    return (
        f"{len(a['boxes'])} same labels={same_labels} max box diff {box_diff:.3g}px "
        f"max score diff {score_diff:.3g} "
        f"mask pixels differing {area_diff:.2%}"
    )


def _run_worker(mode: str, threads: int, weights: Path, image_path: Path) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--worker", mode, str(weights)]
    command.append(str(image_path))
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="4000x3000,1333x800,640x480")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement; the median")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "WEIGHTS", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.threads)))
        return

    import torch
    from PIL import Image
    from reference_model import PHOTOS, build_reference

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    weights = tmp / "reference_r50_fpn.pth"
    torch.save(build_reference().state_dict(), weights)
    # a 2x2 mosaic of the test photos, resized to each size: many objects on a real photo
    tiles = [Image.open(p).convert("RGB").resize((640, 480)) for p in PHOTOS[:4]]
    mosaic = Image.new("RGB", (1280, 960))
    for i, tile in enumerate(tiles):
        mosaic.paste(tile, ((i % 2) * 640, (i // 2) * 480))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {args.threads}"
    )
    print(
        f"{'size':>10} | {'torchvision s':>13} {'ours s':>8} {'speed-up':>8} | "
        f"{'tv extra MB':>11} {'ours MB':>8} {'less mem':>8} | detections | "
        "torchvision with our allocator setting: s, speed-up"
    )
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        image_path = tmp / f"mosaic_{w}x{h}.jpg"
        mosaic.resize((w, h), Image.BICUBIC).save(image_path, quality=92)
        runs = {}
        for mode in ("torchvision", "torchvision-reuse", "ours"):
            repeats = [_run_worker(mode, args.threads, weights, image_path) for _ in range(args.repeats)]
            runs[mode] = sorted(repeats, key=lambda r: r["seconds"])[len(repeats) // 2]  # the median run
        tv, ours = runs["torchvision"], runs["ours"]
        print(
            f"{size:>10} | {tv['seconds']:13.2f} {ours['seconds']:8.2f} "
            f"{tv['seconds'] / ours['seconds']:7.1f}x | "
            f"{tv['extra_bytes'] / 2**20:11.0f} {ours['extra_bytes'] / 2**20:8.0f} "
            f"{tv['extra_bytes'] / max(ours['extra_bytes'], 1):7.1f}x | {compare(ours, tv)} | "
            f"{runs['torchvision-reuse']['seconds']:.2f} "
            f"{runs['torchvision-reuse']['seconds'] / ours['seconds']:.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
