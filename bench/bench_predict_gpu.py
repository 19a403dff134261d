"""GPU inference throughput: our Predictor against torchvision's own pipeline, same weights, same run.

Images/s at 1333x800 (torchvision's default input size: no resize), batch 1 and 8, from uint8 images in
host memory to binary masks back in host memory: torchvision fp32 (``model(images)``, ``masks > 0.5``,
copied to the host) against our ``Predictor`` (channels-last on CUDA) in fp32 and with mixed precision
(bfloat16 where supported). The weights are torchvision's ResNet-50-FPN COCO layout with seeded,
calibrated weights that detect ~100 objects on a mosaic of real photos (``tests/reference_model.py``).
Needs a CUDA device; ``--device cpu`` only checks that the script runs.

    .venv/bin/python bench/bench_predict_gpu.py [--batch-sizes 1,8] [--iters 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reference_model import PHOTOS, build_reference  # noqa: E402
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)

from maskrcnn_core import Predictor  # noqa: E402


def mosaic(width: int, height: int) -> np.ndarray:
    tiles = [Image.open(p).convert("RGB").resize((640, 480)) for p in PHOTOS[:4]]
    canvas = Image.new("RGB", (1280, 960))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % 2) * 640, (i // 2) * 480))
    return np.asarray(canvas.resize((width, height), Image.BICUBIC)).copy()


def images_per_second(run: Callable[[], object], images: int, iters: int, warmup: int, device) -> float:
    for _ in range(warmup):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="1333x800")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: this benchmark measures a GPU (--device cpu only checks the script)")
    width, height = (int(v) for v in args.size.split("x"))
    image = mosaic(width, height)

    reference = build_reference().to(device)
    weights = scratch_folder("bench_gpu_") / "reference_r50_fpn.pth"
    torch.save(reference.state_dict(), weights)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"device: {name}; torch {torch.__version__}; {width}x{height}; {args.iters} timed iterations")

    @torch.no_grad()
    def torchvision_fp32(batch: list[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(b).to(device).permute(2, 0, 1).float().div_(255.0) for b in batch]
        return [(out["masks"][:, 0] > 0.5).cpu().numpy() for out in reference(tensors)]

    print("batch | torchvision fp32 | ours fp32, ratio (detections) | ours mixed precision, ratio")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        batch = [image] * batch_size
        baseline = images_per_second(
            lambda batch=batch: torchvision_fp32(batch), batch_size, args.iters, args.warmup, device
        )
        row = [f"{batch_size:>5} | {baseline:12.1f} im/s |"]
        for mixed in (False, True):
            predictor = Predictor(weights, device=device, batch_size=batch_size, mixed_precision=mixed)
            ours = images_per_second(
                lambda p=predictor, batch=batch: p.predict(batch), batch_size, args.iters, args.warmup, device
            )
            detections = len(predictor.predict([image])[0].boxes)
            row.append(f"{ours:5.1f} im/s {ours / baseline:5.2f}x ({detections} det) |")
            del predictor
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(" ".join(row), flush=True)


if __name__ == "__main__":
    main()
