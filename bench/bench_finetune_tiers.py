"""The fine-tune tiers on a CPU: ``heads`` (frozen backbone + FPN, cached features) against ``full``.

(a) Speed: ``--images`` synthetic "photos" of 1024x768 with 2 classes new to the model, ResNet-50-FPN in
    torchvision's COCO layout (FrozenBatchNorm, stages 2-4 trainable in ``full``; seeded random weights:
    the time does not depend on their values), batch 2, ``--threads`` torch threads. The wall time of
    ``train()`` from its call to the written ``model_final.pt``: ``heads`` for ``--iterations`` (default:
    the app's 10 epochs) as the app runs it — ``--val-photos`` validation photos scored the app's
    ``VALIDATIONS_PER_RUN`` times, a checkpoint ``CHECKPOINTS_PER_RUN`` times — with its feature pass,
    steps, validations and checkpoints reported apart; then the parent model's scoring on the same
    photos as the app does it before activating (``python -m maskrcnn_core evaluate --weights``, a child
    process, the parent's converted networks already in the cache as auto-segmenting leaves them), and the
    sum: the time from "Fine-tune" to a scored new model (the app overlaps the parent's scoring with the
    training, which on 2 busy cores saves little; the sum is the upper bound). ``full`` for
    ``--full-iterations`` measured steps (no validation), and its time for the same number of iterations
    as ``heads`` extrapolated from them when fewer (said so in the output).

(b) Learning at equal wall-clock time: the bundled demo model (MobileNetV2-FPN trained on circle, square,
    triangle, ring) fine-tuned on a synthetic set that adds two classes it does not know (hexagon, star),
    each tier for ``--seconds`` seconds from the call of ``train()`` (its feature pass included), then
    mask AP (pycocotools COCOeval) on a held-out synthetic set of all six classes: the new classes' and
    the known classes' mean, against the demo model's own AP on the known classes. ``--seeds`` training
    sets and training seeds; mean and spread reported.

(c) The heads tier's learning rate (``--part lr``, not in ``all``): the app's end-to-end fine-tune — the
    demo model on a folder with two classes it knows (circle, ring) and two it does not (hexagon, ellipse),
    ``--lr-train-images`` training images, batch 2, ``--lr-iterations`` steps of the heads tier — at each
    of ``--lrs`` (the default rule's rate for batch 2 first), ``--seeds`` training sets and seeds; mask AP
    on ``--val-images`` held-out images of those four classes: the known classes' against the demo
    model's own, and the new classes'.

    .venv/bin/python bench/bench_finetune_tiers.py [--part speed|learning|lr|all] [--threads 2]
        [--images 20] [--val-photos 5] [--iterations N] [--full-iterations 6] [--seconds 60] [--seeds 3]

The machine's other load counts in every figure: run it on an idle machine for clean numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402  (bench/machine.py, beside this script)

from app.resources import DEMO_MODEL  # noqa: E402

PHOTO_SIZE = (768, 1024)  # (H, W)
NEW_CLASSES = ("hexagon", "star")  # shapes the demo model never saw
APP_EPOCHS = 10  # the app's default fine-tune length (app/session/finetune.py)
BATCH = 2


class Clock:
    """The events of one run with the time each arrived, relative to the start of ``train()``."""

    def __init__(self, stop_after_s: float | None = None, token=None) -> None:  # noqa: ANN001
        self.start = time.perf_counter()
        self.events: list[tuple[float, object]] = []
        self.stop_after_s, self.token = stop_after_s, token

    def __call__(self, event) -> None:  # noqa: ANN001 - a training event
        now = time.perf_counter() - self.start
        self.events.append((now, event))
        if self.stop_after_s is not None and now >= self.stop_after_s and event.type == "progress":
            self.token.cancel()

    def durations(self, kind: str) -> list[float]:
        """How long each ``kind`` event took: from the event before it to its arrival."""
        return [t - self.events[i - 1][0] for i, (t, e) in enumerate(self.events) if e.type == kind and i]

    def caching_s(self) -> float:
        cached = [e for _, e in self.events if e.type == "caching"]
        return cached[-1].elapsed_s if cached else 0.0

    def step_times(self) -> list[float]:
        stamps = [t for t, e in self.events if e.type == "progress"]
        return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]

    def iterations(self) -> int:
        return max((e.iteration for _, e in self.events if e.type == "progress"), default=0)


# -------------------------------------------------------------------------------------------- (a)


def speed(args: argparse.Namespace, work: Path) -> None:
    import torch

    from app.session.finetune import CHECKPOINTS_PER_RUN, VALIDATIONS_PER_RUN
    from maskrcnn_core import mask_rcnn_resnet_50_fpn
    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.training import TrainConfig, train
    from maskrcnn_core.model.weights import save_checkpoint

    def photos(name: str, num: int, seed: int):
        root = work / name
        path = generate_synthetic_dataset(
            root, num_images=num, seed=seed, image_size=PHOTO_SIZE, class_names=NEW_CLASSES, max_objects=5
        )
        data, report = load_coco(path, root / "images")
        assert report.ok, report.summary()
        return data, path, root / "images"

    data, _, _ = photos("photos", args.images, seed=1)
    val, val_json, val_images = photos("val_photos", args.val_photos, seed=2)
    iterations = args.iterations or APP_EPOCHS * args.images // BATCH

    def model():
        torch.manual_seed(0)
        return mask_rcnn_resnet_50_fpn(class_names=NEW_CLASSES, backbone_weights=None, norm="frozen")

    print(
        f"(a) speed: {args.images} images {PHOTO_SIZE[1]}x{PHOTO_SIZE[0]} "
        f"(+{args.val_photos} for validation), "
        f"ResNet-50-FPN, batch {BATCH}; load before: {_load()}",
        flush=True,
    )
    results = {}
    for tier, steps in (("heads", iterations), ("full", min(args.full_iterations, iterations))):
        app_like = tier == "heads"
        config = TrainConfig(
            iterations=steps,
            batch_size=BATCH,
            tier=tier,
            trainable_backbone_layers=3 if tier == "full" else None,  # heads refuses any: frozen there
            checkpoint_every=max(1, steps // CHECKPOINTS_PER_RUN) if app_like else 10**6,
            eval_every=max(1, steps // VALIDATIONS_PER_RUN) if app_like else None,
            seed=0,
        )
        clock = Clock()
        started = time.perf_counter()
        train(
            model(),
            data,
            work / f"speed-{tier}",
            config,
            callbacks=[clock],
            val_data=val if app_like else None,
        )
        wall = time.perf_counter() - started
        step = statistics.median(clock.step_times()) if clock.step_times() else wall / steps
        results[tier] = (wall, steps, step, clock.caching_s())
        validations, checkpoints = clock.durations("evaluation"), clock.durations("checkpoint")
        print(
            f"  {tier:5}: {steps} iterations in {wall:.1f} s (feature pass {clock.caching_s():.1f} s, "
            f"median step {step:.2f} s, {len(validations)} validations {sum(validations):.1f} s "
            f"({', '.join(f'{v:.1f}' for v in validations)}), {len(checkpoints)} checkpoints "
            f"{sum(checkpoints):.1f} s); load {_load()}",
            flush=True,
        )
    heads_wall, _, heads_step, caching = results["heads"]
    full_wall, full_steps, full_step, _ = results["full"]

    # the parent's scoring, as the app runs it: the engine's evaluate command in a child process
    parent = save_checkpoint(work / "parent.pt", model(), metadata={"name": "parent"})
    env = {**os.environ, "MASKRCNN_CACHE_DIR": str(work / "ov_cache"), "OMP_NUM_THREADS": str(args.threads)}
    os.environ["MASKRCNN_CACHE_DIR"] = env["MASKRCNN_CACHE_DIR"]
    Predictor(parent)  # converts the parent's networks into the cache, as auto-segmenting with it did
    command = [sys.executable, "-m", "maskrcnn_core", "evaluate", "--gt", str(val_json), "--weights"]
    command += [str(parent), "--images", str(val_images), "--json", "--num-threads", str(args.threads)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    parent_s = time.perf_counter() - started
    scored = heads_wall + parent_s
    print(
        f"  parent scored on the {args.val_photos} photos (evaluate command, CPU backend) "
        f"in {parent_s:.1f} s; "
        f"from Fine-tune to a scored heads model: {scored:.0f} s ({scored / 60:.1f} min; the training "
        f"process's start and loading the parent not counted); under 5 minutes: "
        f"{'yes' if scored < 300 else 'NO'}"
    )
    if full_steps < iterations:
        overhead = max(0.0, full_wall - full_steps * full_step)
        full_same = overhead + iterations * full_step
        how = f"extrapolated from {full_steps} measured steps"
    else:
        full_same, how = full_wall, "measured"
    print(
        f"  for {iterations} iterations: heads {heads_wall:.0f} s ({heads_wall / 60:.1f} min, of which the "
        f"feature pass {caching:.0f} s), full {full_same:.0f} s ({full_same / 60:.1f} min, {how}, no "
        f"validation); {full_same / heads_wall:.1f}x"
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -------------------------------------------------------------------------------------------- (b)


def learning(args: argparse.Namespace, work: Path) -> None:
    import torch

    from maskrcnn_core import load_model
    from maskrcnn_core.cancel import CancelToken
    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.engine.training import TrainConfig, train
    from maskrcnn_core.engine.validation import evaluate_model
    from maskrcnn_core.model.factories import build_model
    from maskrcnn_core.model.weights import load_weights_into, read_checkpoint
    from maskrcnn_core.protocol import LAST_CHECKPOINT

    demo = read_checkpoint(DEMO_MODEL)
    known = tuple(demo.class_map.names)
    classes = known + NEW_CLASSES
    size = (192, 256)  # (H, W): the demo model's training images

    def dataset(name: str, num: int, seed: int):
        root = work / name
        path = generate_synthetic_dataset(
            root, num_images=num, seed=seed, image_size=size, class_names=classes, split_name=name
        )
        data, report = load_coco(path, root / "images")
        assert report.ok, report.summary()
        return data

    held_out = dataset("held_out", args.val_images, seed=10_000)

    def mask_ap(model) -> tuple[float, float]:  # noqa: ANN001
        result = evaluate_model(model, held_out)
        by_name = {result.category_names[c]: ap for c, ap in result["segm"].per_class_ap.items()}
        return (
            statistics.mean(by_name[n] for n in NEW_CLASSES),
            statistics.mean(by_name[n] for n in known),
        )

    parent_known = mask_ap(load_model(DEMO_MODEL))[1]
    print(
        f"(b) learning: demo model ({', '.join(known)}) + new {', '.join(NEW_CLASSES)}; "
        f"{args.train_images} training images {size[1]}x{size[0]}, {args.val_images} held out; "
        f"{args.seconds:.0f} s per run; the demo model's known-class mask AP {parent_known:.3f}",
        flush=True,
    )
    scores: dict[str, list[tuple[float, float, int]]] = {"heads": [], "full": []}
    for seed in range(args.seeds):
        train_data = dataset(f"train{seed}", args.train_images, seed=seed)
        for tier in ("heads", "full"):
            torch.manual_seed(seed)
            model = build_model(demo.arch, class_map=train_data.class_map)
            load_weights_into(model, demo)
            # a constant learning rate after a short warm-up: the run stops on the clock, not on a schedule
            config = TrainConfig(
                iterations=10**6,
                batch_size=4,
                tier=tier,
                warmup_iterations=20,
                checkpoint_every=10**6,
                seed=seed,
            )
            token = CancelToken()
            clock = Clock(stop_after_s=args.seconds, token=token)
            out = work / f"learn-{tier}-{seed}"
            train(model, train_data, out, config, callbacks=[clock], cancel=token)
            trained = load_model(out / LAST_CHECKPOINT)
            new_ap, known_ap = mask_ap(trained)
            scores[tier].append((new_ap, known_ap, clock.iterations()))
            print(
                f"  seed {seed} {tier:5}: {clock.iterations()} iterations "
                f"(feature pass {clock.caching_s():.1f} s); mask AP new {new_ap:.3f}, known {known_ap:.3f} "
                f"({known_ap - parent_known:+.3f})",
                flush=True,
            )
    for tier, rows in scores.items():
        new = [r[0] for r in rows]
        kept = [r[1] - parent_known for r in rows]
        print(
            f"  {tier:5} over {len(rows)} seeds: new-class mask AP {statistics.mean(new):.3f} "
            f"± {_spread(new):.3f} (min {min(new):.3f}, max {max(new):.3f}); known classes "
            f"{statistics.mean(kept):+.3f} ± {_spread(kept):.3f}; "
            f"{statistics.mean(r[2] for r in rows):.0f} iterations"
        )


def learning_rates(args: argparse.Namespace, work: Path) -> None:
    from maskrcnn_core import load_model
    from maskrcnn_core.data import generate_synthetic_dataset, load_coco
    from maskrcnn_core.engine.training import TrainConfig, train
    from maskrcnn_core.engine.validation import evaluate_model
    from maskrcnn_core.model.factories import build_model
    from maskrcnn_core.model.weights import load_weights_into, read_checkpoint
    from maskrcnn_core.protocol import default_lr

    demo = read_checkpoint(DEMO_MODEL)
    known, new = ("circle", "ring"), ("hexagon", "ellipse")  # as tests/app/test_finetune_e2e.py
    classes = known + new

    def dataset(name: str, num: int, seed: int):
        root = work / name
        path = generate_synthetic_dataset(
            root, num_images=num, seed=seed, class_names=classes, split_name=name
        )
        data, report = load_coco(path, root / "images")
        assert report.ok, report.summary()
        return data

    held_out = dataset("lr_held_out", args.val_images, seed=20_000)

    def mask_ap(model) -> tuple[float, float]:  # noqa: ANN001
        result = evaluate_model(model, held_out)
        by_name = {result.category_names[c]: ap for c, ap in result["segm"].per_class_ap.items()}
        return statistics.mean(by_name[n] for n in known), statistics.mean(by_name[n] for n in new)

    parent_known = mask_ap(load_model(DEMO_MODEL))[0]
    rates = [float(r) for r in args.lrs.split(",")] if args.lrs else [default_lr(BATCH), 0.005, 0.02]
    print(
        f"(c) heads-tier learning rate: demo model + {', '.join(new)}; "
        f"{args.lr_train_images} training images, "
        f"batch {BATCH}, {args.lr_iterations} iterations; {args.val_images} held out; the demo model's "
        f"known-class ({', '.join(known)}) mask AP {parent_known:.3f}; default rate {default_lr(BATCH)}",
        flush=True,
    )
    import torch

    rows: dict[float, list[tuple[float, float]]] = {r: [] for r in rates}
    for seed in range(args.seeds):
        train_data = dataset(f"lr_train{seed}", args.lr_train_images, seed=100 + seed)
        for rate in rates:
            torch.manual_seed(seed)
            model = build_model(demo.arch, class_map=train_data.class_map)
            load_weights_into(model, demo)
            config = TrainConfig(
                iterations=args.lr_iterations,
                batch_size=BATCH,
                lr=rate,
                tier="heads",
                checkpoint_every=10**6,
                seed=seed,
            )
            train(model, train_data, work / f"lr-{rate}-{seed}", config)
            known_ap, new_ap = mask_ap(model)
            rows[rate].append((known_ap - parent_known, new_ap))
            print(
                f"  seed {seed} lr {rate:g}: known {known_ap:.3f} ({known_ap - parent_known:+.3f}), "
                f"new {new_ap:.3f}; load {_load()}",
                flush=True,
            )
    for rate, values in rows.items():
        kept, learnt = [v[0] for v in values], [v[1] for v in values]
        print(
            f"  lr {rate:g} over {len(values)} seeds: known classes {statistics.mean(kept):+.3f} "
            f"± {_spread(kept):.3f} (worst {min(kept):+.3f}); new classes' mask AP "
            f"{statistics.mean(learnt):.3f} ± {_spread(learnt):.3f}"
        )


def _spread(values: list[float]) -> float:
    """The sample standard deviation (0 for one value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("speed", "learning", "lr", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--images", type=int, default=20, help="(a) training photos (20)")
    parser.add_argument("--val-photos", type=int, default=5, help="(a) validation photos (5)")
    parser.add_argument("--iterations", type=int, help="(a) iterations (default: 10 epochs at batch 2)")
    parser.add_argument("--full-iterations", type=int, default=6, help="(a) full-tier steps measured (6)")
    parser.add_argument("--seconds", type=float, default=60.0, help="(b) wall-clock seconds per run (60)")
    parser.add_argument("--seeds", type=int, default=3, help="(b) training sets and seeds (3)")
    parser.add_argument("--train-images", type=int, default=40, help="(b) training images per seed (40)")
    parser.add_argument("--val-images", type=int, default=60, help="(b) held-out images (60)")
    parser.add_argument(
        "--lrs", help="(c) learning rates, comma-separated (default: the rule's, 0.005, 0.02)"
    )
    parser.add_argument("--lr-iterations", type=int, default=80, help="(c) iterations (80)")
    parser.add_argument("--lr-train-images", type=int, default=27, help="(c) training images (27)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"machine: {describe()}; torch {torch.__version__}, {args.threads} threads")
    with tempfile.TemporaryDirectory(prefix="bench_tiers_") as tmp:
        if args.part in ("speed", "all"):
            speed(args, Path(tmp))
        if args.part in ("learning", "all"):
            learning(args, Path(tmp))
        if args.part == "lr":
            learning_rates(args, Path(tmp))


if __name__ == "__main__":
    main()
