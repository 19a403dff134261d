"""CPU inference, end to end: our Predictor on each backend against torchvision's own pipeline.

Each measurement runs in a fresh process (so peak memory is that run's alone): load the model and the
photo, predict once (the warm-up every long-running user pays once), then predict ``--predictions - 1``
more times, as over a folder: the time is the median of those, from the decoded image to final binary
masks, and the peak resident memory is the whole process's after all of them, with the part above what it
held once loaded. A process's peak grows over its first few images on every backend (freed memory is kept
for reuse, and what comes next does not always fit in its holes), so two predictions understate it.
torchvision: ``model([image])`` then ``masks > 0.5`` on its full-size float masks. Ours:
``Predictor.predict`` (masks cropped to their boxes) with ``backend="torch"`` and with OpenVINO in float32
(and in bfloat16 where the CPU has it natively, or with ``--bf16`` to see it emulated). All use the same
checkpoint: torchvision's ResNet-50-FPN COCO layout with seeded, calibrated weights
(tests/reference_model.py) that detect ~100 objects on a real photo. Detections are matched box to box
(near-tied scores may come out in another order).

``--startup`` also times a fresh process from loading the checkpoint to its first prediction with an
empty conversion cache (what the first start after install pays) and with the cache filled.

    .venv/bin/python bench/bench_predict_cpu.py [--threads 2] [--sizes 4000x3000,1333x800] [--repeats 3]
        [--predictions 4] [--startup]

With ``--repeats`` the modes take turns (torchvision, ours on torch, ours on OpenVINO, then again), and
each row is the median of its mode: on a machine others share, every mode meets the same load. Peak
memory is the median of the repeats' peaks, with their range: it moves by hundreds of megabytes from
process to process.
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
sys.path.insert(0, str(ROOT / "tests"))

from machine import cpu_name  # noqa: E402  (bench/machine.py, beside this script)
from scratch import scratch_folder  # noqa: E402  (bench/scratch.py, beside this script)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ours-<backend>-<precision> and torchvision; what each fresh process runs
MODES = ("torchvision", "ours-torch-fp32", "ours-openvino-fp32", "ours-openvino-bf16")


def worker(
    mode: str, weights: str, image_path: str, cache: str, threads: int, startup: bool, predictions: int
) -> dict:
    start_process = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from PIL import Image

    image = np.asarray(Image.open(image_path).convert("RGB"))
    load_s = 0.0  # Predictor(): reading the checkpoint, and converting or reading the converted networks
    if mode == "torchvision":
        from reference_model import build_reference

        model = build_reference()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()

        def run() -> tuple:
            with torch.no_grad():
                tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
                out = model([tensor])[0]
                masks = (out["masks"][:, 0] > 0.5).numpy()
            areas = masks.reshape(len(masks), -1).sum(1)
            return out["boxes"].numpy(), out["scores"].numpy(), out["labels"].numpy(), areas
    else:
        from maskrcnn_core import Predictor

        _, backend, precision = mode.split("-")
        loading = time.perf_counter()
        predictor = Predictor(
            weights, device="cpu", batch_size=1, backend=backend, precision=precision, cache_dir=cache
        )
        if backend == "openvino" and precision == "bf16" and predictor.backend.precision != "bf16":
            # no native bfloat16 here: the Predictor runs fp32; --bf16 asked to see it emulated anyway
            from maskrcnn_core.engine.openvino_backend import OpenVinoSubNetworks

            predictor._subnetworks = OpenVinoSubNetworks(predictor.model, precision="bf16", cache_dir=cache)

        load_s = time.perf_counter() - loading

        def run() -> tuple:
            prediction = predictor.predict([image], score_thresh=0.05)[0]
            areas = np.array([m.area for m in prediction.masks])
            return prediction.boxes, prediction.scores, prediction.labels, areas

    before = _rss_bytes()
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    if startup:
        return {"seconds": time.perf_counter() - start_process, "first": first, "load": load_s}
    times = []
    for _ in range(predictions - 1):
        start = time.perf_counter()
        boxes, scores, labels, areas = run()
        times.append(time.perf_counter() - start)
    elapsed = sorted(times)[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "seconds": elapsed,
        "first": first,
        "peak_bytes": peak,
        "extra_bytes": max(0, peak - before),
        "boxes": boxes.tolist(),
        "scores": scores.tolist(),
        "labels": labels.tolist(),
        "mask_areas": [int(a) for a in areas],
    }


def compare(a: dict, b: dict) -> str:
    """``a`` against the reference ``b``: detections matched by label and box (within 1 px)."""
    import numpy as np

    if not a["boxes"] or not b["boxes"]:
        return f"{len(a['boxes'])} vs {len(b['boxes'])} detections"
    boxes_a, boxes_b = np.array(a["boxes"]), np.array(b["boxes"])
    used: set[int] = set()
    pairs = []
    for i in range(len(boxes_a)):
        close = np.abs(boxes_b - boxes_a[i]).max(axis=1) < 1.0
        candidates = [j for j in np.flatnonzero(close) if b["labels"][j] == a["labels"][i] and j not in used]
        if candidates:
            j = min(candidates, key=lambda j: abs(b["scores"][j] - a["scores"][i]))
            used.add(j)
            pairs.append((i, j))
    if not pairs:
        return f"0 of {len(boxes_b)} detections matched"
    ia, ib = (np.array(p) for p in zip(*pairs, strict=True))
    box_diff = np.abs(boxes_a[ia] - boxes_b[ib]).max()
    score_diff = np.abs(np.array(a["scores"])[ia] - np.array(b["scores"])[ib]).max()
    area_a, area_b = np.array(a["mask_areas"])[ia], np.array(b["mask_areas"])[ib]
    # masks of a random-weight model have large regions at probability ~0.5, where float rounding decides
    # a pixel; compare the total area rather than each tiny mask's
    area_diff = np.abs(area_a - area_b).sum() / max(area_b.sum(), 1)
    return (
        f"{len(pairs)}/{len(boxes_b)} matched, max box diff {box_diff:.2g}px, "
        f"max score diff {score_diff:.2g}, mask pixels differing {area_diff:.2%}"
    )


def _load_average() -> str:
    """The 1, 5 and 15-minute load averages: how busy the machine was around a measurement."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _run_worker(
    mode: str,
    threads: int,
    weights: Path,
    image_path: Path,
    cache: Path,
    predictions: int,
    startup: bool = False,
) -> dict:
    command = [sys.executable, __file__, "--threads", str(threads), "--predictions", str(predictions)]
    command += ["--worker", mode, str(weights)]
    command += [str(image_path), str(cache)] + (["--startup"] if startup else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="4000x3000,1333x800,640x480")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement; the median")
    parser.add_argument(
        "--predictions", type=int, default=4, help="predictions per process (>= 2); the first is the warm-up"
    )
    parser.add_argument("--startup", action="store_true", help="also time the first start, cold and cached")
    parser.add_argument("--bf16", action="store_true", help="run OpenVINO bf16 even where it is emulated")
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODE", "WEIGHTS", "IMAGE", "CACHE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.predictions < 2:
        parser.error("--predictions must be at least 2: the first is the warm-up")
    if args.worker:
        print(json.dumps(worker(*args.worker, args.threads, args.startup, args.predictions)))
        return

    import shutil

    import torch
    from PIL import Image
    from reference_model import PHOTOS, build_reference

    from maskrcnn_core.inference_options import cpu_has_native_bf16

    tmp = scratch_folder("bench_predict_")
    weights = tmp / "reference_r50_fpn.pth"
    torch.save(build_reference().state_dict(), weights)
    cache = tmp / "openvino-cache"
    native_bf16 = cpu_has_native_bf16()
    modes = [m for m in MODES if not m.endswith("bf16") or native_bf16 or args.bf16]
    # a 2x2 mosaic of the test photos, resized to each size: many objects on a real photo
    tiles = [Image.open(p).convert("RGB").resize((640, 480)) for p in PHOTOS[:4]]
    mosaic = Image.new("RGB", (1280, 960))
    for i, tile in enumerate(tiles):
        mosaic.paste(tile, ((i % 2) * 640, (i // 2) * 480))

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}, "
        f"{args.predictions} predictions per process, native bfloat16: {'yes' if native_bf16 else 'no'}"
        + ("" if native_bf16 or not args.bf16 else " (bf16 rows are OpenVINO's emulation)")
    )
    if args.startup:
        image_path = tmp / "startup.jpg"
        mosaic.resize((1333, 800), Image.BICUBIC).save(image_path, quality=92)
        for mode in (m for m in modes if "openvino" in m):
            shutil.rmtree(cache, ignore_errors=True)
            cold = _run_worker(mode, args.threads, weights, image_path, cache, args.predictions, startup=True)
            warm = _run_worker(mode, args.threads, weights, image_path, cache, args.predictions, startup=True)
            print(
                f"{mode}, 1333x800, process start to first prediction: empty cache {cold['seconds']:.1f} s "
                f"(Predictor() {cold['load']:.1f} s), cached {warm['seconds']:.1f} s (Predictor() "
                f"{warm['load']:.1f} s); the first prediction itself {warm['first']:.1f} s",
                flush=True,
            )
        tv = _run_worker(
            "torchvision", args.threads, weights, image_path, cache, args.predictions, startup=True
        )
        print(f"start to first prediction, torchvision: {tv['seconds']:.1f} s", flush=True)
    print(f"load average before: {_load_average()}")
    print(
        f"{'size':>10} {'mode':>19} | {'s':>6} {'vs tv':>6} | {'peak MB':>7} {'extra MB':>8} | "
        "detections against torchvision's"
    )
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        image_path = tmp / f"mosaic_{w}x{h}.jpg"
        mosaic.resize((w, h), Image.BICUBIC).save(image_path, quality=92)
        # the modes take turns, repeat after repeat: on a machine others load, each mode meets the same load
        repeats: dict[str, list[dict]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                repeats[mode].append(
                    _run_worker(mode, args.threads, weights, image_path, cache, args.predictions)
                )
        runs = {}
        for mode in modes:
            by_time = sorted(repeats[mode], key=lambda r: r["seconds"])
            runs[mode] = run = by_time[len(by_time) // 2]  # the median
            tv = runs["torchvision"]
            # memory moves from process to process on its own: the median of the repeats, and their range
            peaks = sorted(r["peak_bytes"] / 2**20 for r in repeats[mode])
            extras = sorted(r["extra_bytes"] / 2**20 for r in repeats[mode])
            spread = f" ({peaks[0]:.0f}-{peaks[-1]:.0f})" if len(peaks) > 1 else ""
            print(
                f"{size:>10} {mode:>19} | {run['seconds']:6.2f} {tv['seconds'] / run['seconds']:5.1f}x | "
                f"{peaks[len(peaks) // 2]:7.0f}{spread} {extras[len(extras) // 2]:8.0f} | "
                + ("reference" if mode == "torchvision" else compare(run, tv)),
                flush=True,
            )
        print(f"{'':>10} load average after {size}: {_load_average()}", flush=True)


if __name__ == "__main__":
    main()
