"""The review queue against random picks: does correcting the model's most uncertain images teach it more?

A simulated loop, per seed: a pool of synthetic images (``--pool``, 192x256) of which most hold only the
four shapes the bundled demo model knows (circle, square, triangle, ring) and ``--new-share`` also hold two
it never saw (hexagon, star). The demo model segments the pool once (its uncertainty from that same pass).
Then, for each ``N`` in ``--n``: take the first ``N`` images of the review queue
(``app.project.review_queue``, diversity rule included) or ``N`` random images, "correct" them with their
ground truth, fine-tune the demo model the same way for both (the heads tier, ``--iterations`` steps at
batch 4, the same training seed), and score mask AP (pycocotools COCOeval) on a fixed held-out set of all
six classes. Mean and spread over ``--seeds``.

It also reports what the signal correlates with: the share of the queue's picks that hold a new class
against the pool's share, and the image score's mean on images with and without new classes.

    .venv/bin/python bench/bench_review_queue.py [--seeds 5] [--n 8 16] [--pool 160] [--iterations 120]

The machine's other load slows it but does not change the figures (fixed iterations, not a clock).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the bundled demo model (package data of app/resources; resources/ in older checkouts)
DEMO_MODEL = next(
    (
        p
        for p in (
            ROOT / "app" / "resources" / "models" / "demo.pt",
            ROOT / "resources" / "models" / "demo.pt",
        )
        if p.is_file()
    ),
    ROOT / "app" / "resources" / "models" / "demo.pt",
)
NEW_CLASSES = ("hexagon", "star")
SIZE = (192, 256)  # (H, W): the demo model's training images
BATCH = 4


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16], help="images corrected per run")
    parser.add_argument("--pool", type=int, default=160, help="pool images per seed")
    parser.add_argument("--new-share", type=float, default=0.25, help="share of pool images with new classes")
    parser.add_argument("--val-images", type=int, default=40, help="held-out images (all six classes)")
    parser.add_argument("--iterations", type=int, default=120, help="heads-tier steps per fine-tune")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="the model the pool is new to")
    parser.add_argument(
        "--signal-only",
        action="store_true",
        help="only what the image score correlates with, on one pool per seed (no fine-tunes: a minute)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_review_") as tmp:
        if args.signal_only:
            signal(args, Path(tmp), args.model)
        else:
            run(args, Path(tmp), args.model)


def run(args: argparse.Namespace, work: Path, demo_model: Path) -> None:
    import torch

    from app.project.review_queue import review_order, unit_features
    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.data.coco import CocoData
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.training import TrainConfig, train
    from maskrcnn_core.engine.validation import evaluate_model
    from maskrcnn_core.model.factories import build_model
    from maskrcnn_core.model.weights import load_model, load_weights_into, read_checkpoint
    from maskrcnn_core.protocol import LAST_CHECKPOINT

    demo = read_checkpoint(demo_model)
    known = tuple(demo.class_map.names)
    classes = known + NEW_CLASSES
    ids = tuple(range(1, len(classes) + 1))

    def dataset(name: str, num: int, seed: int, names: tuple[str, ...]) -> CocoData:
        root = work / name
        path = generate_synthetic_dataset(
            root,
            num_images=num,
            seed=seed,
            image_size=SIZE,
            class_names=names,
            category_ids=ids[: len(names)],
            split_name=name,
        )
        data, report = load_coco(path, root / "images")
        assert report.ok, report.summary()
        return data

    held_out = dataset("held_out", args.val_images, 10_000, classes)

    def mask_ap(model) -> tuple[float, float]:  # noqa: ANN001
        result = evaluate_model(model, held_out)
        by_name = {result.category_names[c]: ap for c, ap in result["segm"].per_class_ap.items()}
        return statistics.mean(by_name.values()), statistics.mean(by_name[n] for n in NEW_CLASSES)

    all_ap, _ = mask_ap(load_model(demo_model))
    print(
        f"pool {args.pool} images {SIZE[1]}x{SIZE[0]} per seed "
        f"({args.new_share:.0%} with {', '.join(NEW_CLASSES)}),"
        f" {args.val_images} held out; heads tier, {args.iterations} iterations at batch {BATCH}; "
        f"demo model's mask AP on the held-out set (all six classes) {all_ap:.3f}",
        flush=True,
    )
    predictor = Predictor(demo_model, device="cpu")
    scoring = _ScoringClock()
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    picked_new: dict[tuple[str, int], list[float]] = {}
    score_gap: list[tuple[float, float]] = []
    scoring_share: list[float] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        num_new = round(args.pool * args.new_share)
        old = dataset(f"pool_known{seed}", args.pool - num_new, seed, known)
        new = dataset(f"pool_new{seed}", num_new, 1000 + seed, classes)
        images = [dataclasses.replace(im, id=i + 1) for i, im in enumerate(old.images + new.images)]
        pool = CocoData(held_out.categories, images)
        has_new = np.array([i >= len(old.images) for i in range(len(images))])

        t, scored_before = time.perf_counter(), scoring.seconds
        predictions = predictor.predict([im.path for im in images])
        predict_s = time.perf_counter() - t
        scores = np.array([p.uncertainty.image for p in predictions])
        features = np.stack([p.uncertainty.features for p in predictions])
        scoring_share.append((scoring.seconds - scored_before) / predict_s)
        score_gap.append((float(scores[has_new].mean()), float(scores[~has_new].mean())))
        eligible = np.ones(len(images), dtype=bool)
        queue, _ = review_order(scores, unit_features(features), eligible, top=max(args.n))
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(len(images))

        for n in args.n:
            for how, picks in (("queue", queue[:n]), ("random", shuffled[:n])):
                torch.manual_seed(seed)
                train_data = CocoData(pool.categories, [pool.images[i] for i in picks])
                model = build_model(demo.arch, class_map=train_data.class_map)
                load_weights_into(model, demo)
                config = TrainConfig(
                    iterations=args.iterations,
                    batch_size=BATCH,
                    tier="heads",
                    checkpoint_every=10**6,
                    seed=seed,
                )
                out = work / f"run-{seed}-{n}-{how}"
                train(model, train_data, out, config)
                ap, new_ap = mask_ap(load_model(out / LAST_CHECKPOINT))
                results.setdefault((how, n), []).append((ap, new_ap))
                picked_new.setdefault((how, n), []).append(float(has_new[picks].mean()))
                print(
                    f"  seed {seed} N={n:3} {how:6}: mask AP {ap:.3f} (new classes {new_ap:.3f}); "
                    f"{has_new[picks].mean():.0%} of the picks hold a new class "
                    f"[{time.perf_counter() - started:.0f} s]",
                    flush=True,
                )

    print(f"\nover {args.seeds} seeds (mean ± sample standard deviation):")
    for n in args.n:
        for how in ("queue", "random"):
            rows = results[(how, n)]
            ap = [r[0] for r in rows]
            new_ap = [r[1] for r in rows]
            print(
                f"  N={n:3} {how:6}: mask AP {statistics.mean(ap):.3f} ± {_spread(ap):.3f}, new classes "
                f"{statistics.mean(new_ap):.3f} ± {_spread(new_ap):.3f}; picks with a new class "
                f"{statistics.mean(picked_new[(how, n)]):.0%}"
            )
    with_new = statistics.mean(g[0] for g in score_gap)
    without = statistics.mean(g[1] for g in score_gap)
    print(
        f"image uncertainty: {with_new:.3f} on pool images with a new class, {without:.3f} on the others; "
        f"scoring took {statistics.mean(scoring_share):.2%} of prediction time"
    )


class _ScoringClock:
    """Wraps the Predictor's scoring call to time it (the rest of the pass is prediction proper)."""

    def __init__(self) -> None:
        import maskrcnn_core.engine.predictor as predictor_module

        self.seconds = 0.0
        self._module = predictor_module
        self._score = predictor_module.score_detections
        predictor_module.score_detections = self

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        t = time.perf_counter()
        try:
            return self._score(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def signal(args: argparse.Namespace, work: Path, demo_model: Path) -> None:
    """Spearman rank correlation of the image score, over each seed's pool, with: the image's error (1 - F1
    of the model's detections scoring 0.5 or more against the truth, matched at mask IoU 0.5, any class),
    holding a new class, and the number of objects (a crowded image should not win by its count)."""
    from pycocotools import mask as mask_utils

    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.masks import mask_to_rle
    from maskrcnn_core.model.weights import read_checkpoint

    known = tuple(read_checkpoint(demo_model).class_map.names)
    classes = known + NEW_CLASSES
    predictor = Predictor(demo_model, device="cpu")
    rows = []
    for seed in range(args.seeds):
        root = work / f"signal{seed}"
        path = generate_synthetic_dataset(
            root,
            num_images=args.pool,
            seed=500 + seed,
            image_size=SIZE,
            class_names=classes,
            split_name="pool",
        )
        data, _ = load_coco(path, root / "images")
        new_ids = {c.id for c in data.categories if c.name in NEW_CLASSES}
        for image, prediction in zip(
            data.images, predictor.predict([im.path for im in data.images]), strict=True
        ):
            truth = [a.rle for a in image.annotations if not a.iscrowd]
            shown = [
                mask_to_rle(m) for m, s in zip(prediction.masks, prediction.scores, strict=True) if s >= 0.5
            ]
            matched = 0
            if truth and shown:
                iou = mask_utils.iou(shown, truth, [0] * len(truth))
                while iou.size and iou.max() >= 0.5:
                    i, j = np.unravel_index(np.argmax(iou), iou.shape)
                    matched += 1
                    iou[i, :] = -1
                    iou[:, j] = -1
            f1 = 2 * matched / (len(shown) + len(truth)) if shown or truth else 1.0
            has_new = any(a.category_id in new_ids for a in image.annotations)
            rows.append((prediction.uncertainty.image, 1.0 - f1, float(has_new), float(len(truth))))
    table = np.array(rows)
    print(f"image score over {len(rows)} pool images ({args.seeds} pools), Spearman rank correlation with:")
    for column, what in (
        (1, "the image's error (1 - F1 at IoU 0.5)"),
        (2, "holding a new class"),
        (3, "object count"),
    ):
        print(f"  {what}: {_spearman(table[:, 0], table[:, column]):+.2f}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
