"""Mask pasting: torchvision's ``paste_masks_in_image`` + ``> 0.5`` against our ``paste_masks_cropped``.

100 random 28x28 mask probabilities with boxes from 2 % to 45 % of the image side (clipped to the image, as
torchvision's detector clips them), pasted into 4000x3000, 1333x800 and 640x480 images. Each measurement
runs in a fresh process, so its peak memory is its own: after building the inputs and a small warm-up, it
times one call and reports the peak resident memory (``ru_maxrss``) above what the process held before the
call. The pixels of both are compared inside the same run.

    .venv/bin/python bench/bench_paste.py [--threads 2] [--sizes 4000x3000,1333x800,640x480]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUM_MASKS = 100


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(height: int, width: int):
    """Seeded ``(N, 28, 28)`` probabilities and ``(N, 4)`` xyxy boxes inside the image."""
    import torch

    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(NUM_MASKS, 28, 28, generator=gen)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(NUM_MASKS, 2, generator=gen) * size
    half = (0.02 + 0.43 * torch.rand(NUM_MASKS, 2, generator=gen)) * size / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return probs, boxes


def worker(mode: str, height: int, width: int, threads: int) -> dict:
    """Time one call of ``mode`` in this process; returns seconds, peak extra bytes and the set pixels."""
    import numpy as np
    import torch
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from maskrcnn_core.engine.postprocess import paste_masks_cropped

    torch.set_num_threads(threads)
    probs, boxes = _inputs(height, width)
    # Warm up both code paths on a tiny image so that one-time setup is not timed.
    paste_masks_in_image(probs[:2, None], boxes[:2] / 100, (height // 100, width // 100))
    paste_masks_cropped(probs[:2], boxes[:2] / 100, (height // 100, width // 100))

    before = _rss_bytes()
    start = time.perf_counter()
    if mode == "torchvision":
        masks = paste_masks_in_image(probs[:, None], boxes, (height, width), padding=1)[:, 0] > 0.5
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        set_pixels = masks.flatten(1).sum(1).tolist()
    else:
        crops = paste_masks_cropped(probs, boxes, (height, width))
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        set_pixels = [int(np.count_nonzero(c.mask)) for c in crops]
    return {"seconds": elapsed, "extra_bytes": max(0, peak - before), "set_pixels": set_pixels}


def _run_worker(mode: str, height: int, width: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--sizes",
        f"{width}x{height}",
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="4000x3000,1333x800,640x480", help="WxH,WxH,...")
    parser.add_argument("--worker", choices=["torchvision", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    if args.worker:
        width, height = sizes[0]
        print(json.dumps(worker(args.worker, height, width, args.threads)))
        return

    print(f"{NUM_MASKS} masks, torch threads = {args.threads}; each number from a fresh process")
    header = (
        f"{'image':>10} | {'torchvision s':>13} {'ours s':>8} {'speed-up':>8} | "
        f"{'torchvision MB':>14} {'ours MB':>8} {'less mem':>8} | pixels"
    )
    print(header)
    print("-" * len(header))
    for width, height in sizes:
        ref = _run_worker("torchvision", height, width, args.threads)
        ours = _run_worker("ours", height, width, args.threads)
        total = sum(ref["set_pixels"])
        diff = sum(abs(a - b) for a, b in zip(ref["set_pixels"], ours["set_pixels"], strict=True))
        ref_mb, ours_mb = ref["extra_bytes"] / 2**20, ours["extra_bytes"] / 2**20
        print(
            f"{width:>5}x{height:<4} | {ref['seconds']:>13.3f} {ours['seconds']:>8.3f} "
            f"{ref['seconds'] / ours['seconds']:>7.1f}x | {ref_mb:>14.0f} {ours_mb:>8.0f} "
            f"{ref_mb / max(ours_mb, 1e-3):>7.1f}x | set-pixel count differs by {diff} of {total}"
        )


if __name__ == "__main__":
    main()
