"""``python -m maskrcnn_core`` (also ``maskrcnn-core``): train, predict, evaluate, synthetic.

Exit codes (:class:`~maskrcnn_core.protocol.ExitCode`): 0 finished, 1 failed while running, 2 bad input
(the message says what), 3 cancelled (SIGINT/SIGTERM: the last checkpoint is written first, and
``--resume`` continues from it).

This module parses and reports; what a command does is the library's. ``train`` parses into a
:class:`~maskrcnn_core.protocol.TrainRequest`, which :func:`maskrcnn_core.engine.training_model.run_request`
carries out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

from maskrcnn_core.inference_options import BACKENDS, PRECISIONS
from maskrcnn_core.paths import check_output_dir, check_output_file, one_line_error
from maskrcnn_core.protocol import (
    BACKBONES,
    DEVICES,
    FINAL_MODEL,
    HEADS_TIER_MAX_IMAGES,
    LAST_CHECKPOINT,
    METRICS_LOG,
    PROGRESS_MODES,
    REFERENCE_BATCH,
    REFERENCE_LR,
    TIERS,
    CachingEvent,
    CancelledEvent,
    ErrorEvent,
    EvaluationEvent,
    ExitCode,
    FinishedEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
    TrainingEvent,
    TrainRequest,
)


class BadInput(Exception):
    """Reported as a one-line error with exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # the engine's warnings (a backend that fell back to torch, a cache it could not write), one line each
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    if args.nice:
        _lower_priority(args.nice)
    try:
        return args.run(args)
    except (BadInput, ValueError, OSError) as exc:
        # every expected failure: the library's errors are ValueErrors naming the file and the problem;
        # OSError covers a file that vanished or a disk that filled after the checks
        print(f"error: {one_line_error(exc)}", file=sys.stderr)
        return ExitCode.BAD_INPUT


# ------------------------------------------------------------------------------------------ train


def _train(args: argparse.Namespace) -> int:
    from maskrcnn_core.cancel import CancelToken
    from maskrcnn_core.engine.distributed import process_place
    from maskrcnn_core.engine.training import TrainingError
    from maskrcnn_core.engine.training_model import run_request

    request = TrainRequest.from_args(args)
    check_output_dir(request.out)
    _set_threads(request.num_threads)
    with process_place(request.device) as process:
        leader = process.leader  # the one process that reports and writes files
        train_data = _load_dataset(
            request.train_json, request.images, "training", fatal_if_empty=True, quiet=not leader
        )
        if train_data.num_annotations == 0:
            raise BadInput(f"the training file {request.train_json} has no usable annotations to learn from")
        val_data = None
        if request.val_json:
            val_images = request.val_images or request.images
            val_data = _load_dataset(
                request.val_json, val_images, "validation", fatal_if_empty=True, quiet=not leader
            )
        cancel = CancelToken()
        _cancel_on_signals(cancel)
        callbacks = []
        if leader:
            callbacks = [_MetricsFile(Path(request.out) / METRICS_LOG), _progress_printer(request.progress)]
        try:
            result = run_request(
                request,
                train_data,
                val_data=val_data,
                device=process.device,
                callbacks=callbacks,
                cancel=cancel,
                notify=(lambda message: print(message, file=sys.stderr)) if leader else None,
            )
        except TrainingError as exc:
            _report_error(request.progress, str(exc))
            return ExitCode.FAILED
        if result.status is RunStatus.CANCELLED:
            if leader:
                print(f"cancelled at iteration {result.iteration}; resume with --resume", file=sys.stderr)
            return ExitCode.CANCELLED
        if leader and request.progress != "jsonl":
            print(f"model written to {result.model_path}", file=sys.stderr)
        return ExitCode.OK


# ------------------------------------------------------------------------------------------ predict


def _predict(args: argparse.Namespace) -> int:
    from maskrcnn_core.data.coco import write_json_atomic
    from maskrcnn_core.engine.distributed import process_place
    from maskrcnn_core.engine.predictor import Predictor
    from maskrcnn_core.engine.sharded_prediction import SHARE_WAIT, predict_images

    check_output_file(args.out)  # before inference, so a bad --out loses no results
    tiling = _tile_options(args)
    _set_threads(args.num_threads)
    # under torchrun each process predicts its share of the images, and the leader writes them all
    with process_place(args.device, timeout=SHARE_WAIT) as place:
        paths, image_ids = _images_to_predict(args, quiet=not place.leader)
        show = args.progress == "bar" and place.leader

        def make_predictor() -> Predictor:
            predictor = Predictor(
                args.weights,
                device=place.device,
                batch_size=args.batch_size,
                backend=args.backend,
                precision=args.precision,
                tiling=tiling,
            )
            if show:
                print(f"predicting on {predictor.description}", file=sys.stderr)
            return predictor

        bars: list = []  # the leader's bar over its own share, from the first image on

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(_bar(total, "predict"))
                if place.world_size > 1:
                    bars[0].set_postfix_str(f"process 0's share, of {place.world_size}")
            bars[0].update(done - bars[0].n)

        outcome = predict_images(
            make_predictor,
            paths,
            image_ids,
            place,
            out=Path(args.out),
            score_thresh=args.score_thresh,
            progress=progress if show else None,
        )
        for bar in bars:
            bar.close()
    if outcome is None:  # not the leader: the leader reports and writes
        return ExitCode.OK
    for image in outcome.unreadable + outcome.share_failures:
        print(f"skipped {image.source}: {image.reason}", file=sys.stderr)
    results = outcome.results
    if not args.coco:  # without a COCO file, say which file each image id is
        names = {i: Path(p).name for i, p in zip(image_ids, paths, strict=False)}
        for r in results:
            r["file_name"] = names[r["image_id"]]
    write_json_atomic(args.out, results)
    predicted = len(paths) - len(outcome.unreadable) - len(outcome.share_failures)
    print(
        f"{len(results)} detections on {predicted} images written to {args.out}"
        + (f"; {len(outcome.unreadable)} images could not be read" if outcome.unreadable else "")
        + (
            f"; {len(outcome.share_failures)} images not predicted: process "
            + ", ".join(str(rank) for rank in outcome.failed_ranks)
            + " failed"
            if outcome.share_failures
            else ""
        ),
        file=sys.stderr,
    )
    return ExitCode.FAILED if outcome.share_failures else ExitCode.OK


def _images_to_predict(args: argparse.Namespace, *, quiet: bool) -> tuple[list[Path], list[int]]:
    """The images ``predict`` segments, in the results' order, and the image id of each."""
    from maskrcnn_core.image_io import IMAGE_EXTENSIONS

    images_dir = Path(args.images)
    if args.coco:
        data = _load_dataset(args.coco, images_dir, "image list", fatal_if_empty=False, quiet=quiet)
        paths = [Path(im.path) for im in data.images]
        image_ids = [im.id for im in data.images]
    else:
        if not images_dir.is_dir():
            raise BadInput(f"--images: {images_dir} is not a folder")
        paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        image_ids = list(range(1, len(paths) + 1))
    if not paths:
        raise BadInput(f"no images to predict in {images_dir}")
    return paths, image_ids


# ------------------------------------------------------------------------------------------ evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from maskrcnn_core.engine.evaluation import evaluate_coco

    if (args.pred is None) == (args.weights is None):
        raise BadInput("give either --pred results.json or --weights CKPT (with --images)")
    if args.weights:
        from maskrcnn_core.engine.predictor import Predictor
        from maskrcnn_core.engine.validation import evaluate_model

        _set_threads(args.num_threads)
        if not args.images:
            raise BadInput("--weights needs --images DIR")
        data = _load_dataset(args.gt, args.images, "ground truth", fatal_if_empty=True, quiet=False)
        result = evaluate_model(
            Predictor(args.weights, device=args.device, backend=args.backend, precision=args.precision),
            data,
            notify=lambda message: print(f"warning: {message}", file=sys.stderr),
        )
    else:
        result = evaluate_coco(args.gt, args.pred)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format_table())
    return ExitCode.OK


def _tile_options(args: argparse.Namespace):  # noqa: ANN202 - TileOptions, imported when used
    """``--tile auto|off|SIZE`` and ``--tile-overlap``, ``--tile-auto-factor``, ``--full-image-pass``."""
    from maskrcnn_core.engine.tiling import TileOptions

    tile = args.tile.strip().lower()
    if tile in ("auto", "off"):
        mode, size = tile, TileOptions.size
    elif tile.isdigit():
        mode, size = "on", int(tile)
    else:
        raise BadInput(f"--tile must be auto, off or a tile size in pixels such as 512, got {args.tile!r}")
    return TileOptions(
        mode=mode,
        size=size,
        overlap=args.tile_overlap,
        auto_factor=args.tile_auto_factor,
        full_image_pass=args.full_image_pass,
    )


def _synthetic(args: argparse.Namespace) -> int:
    from maskrcnn_core.data import synthetic

    check_output_dir(args.out, flag="output folder")
    if args.objects is not None or max(args.height, args.width) >= synthetic.LARGE_SCENE_MIN_SIDE:
        per_object = synthetic.LARGE_SCENE_AREA_PER_OBJECT
        objects = args.objects if args.objects is not None else args.height * args.width // per_object
        path = synthetic.generate_large_scene(
            args.out,
            height=args.height,
            width=args.width,
            num_objects=objects,
            seed=args.seed,
            num_images=args.num_images,
            image_format=args.format,
            split_name=args.split,
        )
        print(path)
        return ExitCode.OK
    path = synthetic.generate_synthetic_dataset(
        args.out,
        num_images=args.num_images,
        seed=args.seed,
        image_size=(args.height, args.width),
        split_name=args.split,
    )
    print(path)
    return ExitCode.OK


# ------------------------------------------------------------------------------------------ weights


def _weights(args: argparse.Namespace) -> int:
    from maskrcnn_core import downloads

    if args.action == "list":
        print(f"{'name':<9} {'file':<44} {'size':>7}  {'COCO val2017':<26} cached")
        for weights in downloads.CATALOGUE.values():
            cached = "yes" if downloads.is_cached(weights) else "no"
            size = f"{weights.size_mb:.0f} MB"
            print(f"{weights.name:<9} {weights.filename:<44} {size:>7}  {weights.metrics:<26} {cached}")
        print(f"cache folder: {downloads.hub_checkpoints_dir()}")
        return ExitCode.OK
    if not args.names:
        raise BadInput(f"name the weights to download: {', '.join(downloads.CATALOGUE)}")
    try:
        chosen = [downloads.entry(name) for name in args.names]
    except KeyError as exc:
        raise BadInput(exc.args[0]) from None
    from maskrcnn_core.cancel import CancelToken

    cancel = CancelToken()
    _cancel_on_signals(cancel)
    for weights in chosen:
        if downloads.is_cached(weights):
            print(downloads.cached_path(weights))
            continue
        bar = _bar(weights.size_bytes, weights.name)
        bar.unit, bar.unit_scale, bar.unit_divisor = "B", True, 1024

        def show(done: int, total: int, bar=bar) -> None:  # noqa: ANN001 - the bar of this file
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            path = downloads.download(weights, progress=show, cancel=cancel)
        except downloads.DownloadCancelled:
            bar.close()
            print(f"error: download of {weights.filename} cancelled; nothing was kept", file=sys.stderr)
            return ExitCode.CANCELLED
        except downloads.DownloadError as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr)
            return ExitCode.FAILED
        bar.close()
        print(path)
    return ExitCode.OK


# ------------------------------------------------------------------------------------------ helpers


def _load_dataset(json_path, images_dir, role: str, *, fatal_if_empty: bool, quiet: bool):
    from maskrcnn_core.data.coco import load_coco

    data, report = load_coco(json_path, images_dir)
    if report.fatal:
        raise BadInput(f"the {role} file {json_path} cannot be used:\n{report.summary()}")
    if not quiet and (report.skipped or report.warnings):
        print(f"{role} data {json_path}:\n{report.summary()}", file=sys.stderr)
    if fatal_if_empty and not data.images:
        raise BadInput(f"the {role} file {json_path} has no usable images")
    return data


def _lower_priority(increment: int) -> None:
    """Be nicer to the other processes by ``increment`` (Unix; elsewhere the priority stays as it is)."""
    if hasattr(os, "nice"):
        os.nice(increment)


def _set_threads(num_threads: int | None) -> None:
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


def _cancel_on_signals(cancel) -> None:
    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        cancel.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


class _MetricsFile:
    """Appends every training event to the run's metrics log (flushed: a crash keeps what was logged)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def __call__(self, event: TrainingEvent) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(event.to_json() + "\n")


def _add_tile_flags(parser: argparse.ArgumentParser) -> None:
    from maskrcnn_core.engine.tiling import (
        DEFAULT_AUTO_FACTOR,
        DEFAULT_TILE_OVERLAP,
        DEFAULT_TILE_SIZE,
        TileOptions,
    )

    parser.add_argument(
        "--tile",
        default="auto",
        metavar="auto|off|SIZE",
        help=f"tiled inference for large images: tiles of SIZE pixels run at the image's own scale; auto "
        f"tiles ({DEFAULT_TILE_SIZE} px) an image the model would shrink more than --tile-auto-factor (auto)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        help=f"pixels neighbouring tiles share: at least the largest object ({DEFAULT_TILE_OVERLAP})",
    )
    parser.add_argument(
        "--tile-auto-factor",
        type=float,
        default=DEFAULT_AUTO_FACTOR,
        help=f"--tile auto tiles an image this many times the model's scale or more ({DEFAULT_AUTO_FACTOR})",
    )
    parser.add_argument(
        "--full-image-pass",
        action=argparse.BooleanOptionalAction,
        default=TileOptions.full_image_pass,
        help="with tiles, also run the whole image (resized, as untiled) for objects larger than the overlap",
    )


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="what runs the network on a CPU: OpenVINO when installed (auto), torch, or openvino",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the CPU backend's precision: bf16 is faster on CPUs with AMX or AVX512-BF16, at a small "
        "cost in accuracy (auto: fp32)",
    )


def _progress_printer(mode: str):
    if mode == "jsonl":

        def jsonl(event: TrainingEvent) -> None:
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()

        return jsonl
    if mode == "none":
        return lambda event: None
    bars: list = []  # the bar, once the run has started
    caching: list = []  # the heads tier's feature pass, while it runs

    def bar(event: TrainingEvent) -> None:
        if isinstance(event, CachingEvent):
            if not caching:
                caching.append(_bar(event.total, "features"))
            b = caching[-1]
            if event.on_disk and b.postfix != "on disk":
                b.set_postfix_str("on disk")  # past the memory budget: in the run folder from now on
            b.update(event.done - b.n)
            if event.done == event.total:
                b.close()
        elif isinstance(event, StartEvent):
            bars.append(_bar(event.iterations, "train", initial=event.start_iteration))
        elif isinstance(event, ProgressEvent):
            b = bars[-1]
            b.update(event.iteration - b.n)
            b.set_postfix(
                loss=f"{event.losses['total_loss']:.3f}",
                lr=f"{event.lr:.2e}",
                img_s=f"{event.images_per_s:.1f}",
            )
        elif isinstance(event, EvaluationEvent):
            segm = event.metrics.get("segm", {})
            bars[-1].write(f"iteration {event.iteration}: mask AP {segm.get('ap')}, AP50 {segm.get('ap50')}")
        elif isinstance(event, FinishedEvent | CancelledEvent) and bars:
            bars[-1].close()

    return bar


def _bar(total: int, desc: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)


def _report_error(mode: str, message: str) -> None:
    if mode == "jsonl":
        sys.stdout.write(ErrorEvent(message=message).to_json() + "\n")
        sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn-core",
        description="Mask R-CNN Studio's engine from the command line: train, predict and evaluate.",
    )
    parser.add_argument(
        "--nice",
        type=int,
        choices=range(0, 20),
        metavar="0-19",
        default=0,
        help="lower this run's CPU priority by this much (Unix): the app runs training at 10 so that "
        "its window stays responsive (default 0)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser(
        "train",
        help="train or fine-tune on a COCO dataset",
        formatter_class=fmt,
        description="Train or fine-tune a Mask R-CNN on COCO annotations.",
        epilog=textwrap.dedent("""\
                           examples:
                             maskrcnn-core train --train-json data/train.json --images data/images \\
                                 --out runs/shapes --backbone mobilenet_v2 --iterations 2000
                             maskrcnn-core train --train-json fixes.json --images photos --out runs/v2 \\
                                 --weights runs/v1/model_final.pt --epochs 20 --progress jsonl
                             torchrun --nproc-per-node 2 -m maskrcnn_core train ... (DistributedDataParallel)
                           writes RUN/{final}, RUN/{last} (resumable),
                           and RUN/{log}""").format(final=FINAL_MODEL, last=LAST_CHECKPOINT, log=METRICS_LOG),
    )
    t.add_argument("--train-json", required=True, help="COCO annotations to train on")
    t.add_argument("--images", required=True, help="folder the file_names of --train-json are relative to")
    t.add_argument("--out", required=True, help="run folder for checkpoints and metrics, e.g. runs/exp1")
    t.add_argument("--val-json", help="COCO annotations to validate on (mask AP, box AP)")
    t.add_argument("--val-images", help="folder for --val-json (default: --images)")
    t.add_argument(
        "--weights", help="start from: our checkpoint, a torchvision state dict, 'coco' or 'coco-v2'"
    )
    t.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default=TrainRequest.backbone,
        help="architecture when starting without --weights (default: %(default)s)",
    )
    length = t.add_mutually_exclusive_group(required=True)
    length.add_argument("--iterations", type=int, help="optimizer steps, e.g. 2000")
    length.add_argument("--epochs", type=float, help="passes over the training images, e.g. 12")
    t.add_argument(
        "--batch-size",
        type=int,
        default=TrainRequest.batch_size,
        help="images per step and process (default %(default)s)",
    )
    t.add_argument(
        "--lr",
        type=float,
        help=f"base learning rate (default {REFERENCE_LR} * global batch / {REFERENCE_BATCH})",
    )
    t.add_argument(
        "--min-size", type=int, help="shorter side the images are resized to (default: the model's)"
    )
    t.add_argument("--max-size", type=int, help="cap on the longer side (default: the model's)")
    t.add_argument(
        "--trainable-backbone-layers",
        type=int,
        choices=range(0, 6),
        metavar="{0..5}",
        help="backbone stages that train, from the last (default: 3 when pretrained, 5 from scratch)",
    )
    t.add_argument("--fpn-channels", type=int, help="FPN width for a new model (default 256)")
    t.add_argument("--hidden-dim", type=int, help="box-head width for a new model (default 1024)")
    t.add_argument("--mask-hidden-channels", type=int, help="mask-head width for a new model (default 256)")
    t.add_argument(
        "--anchor-sizes",
        help="MobileNetV2-FPN anchor size per level, e.g. 16,32,64,128 for small "
        "images (default 32,64,128,256)",
    )
    t.add_argument(
        "--no-pretrained-backbone",
        action="store_true",
        help="start a new model's backbone from random weights instead of ImageNet's",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=TrainRequest.checkpoint_every,
        help="iterations between checkpoints (%(default)s)",
    )
    t.add_argument("--eval-every", type=int, help="iterations between validations (default: at the end only)")
    t.add_argument(
        "--seed", type=int, default=TrainRequest.seed, help="random seed (data order, augmentation, sampling)"
    )
    t.add_argument(
        "--hflip", type=float, default=TrainRequest.hflip, help="horizontal-flip probability (%(default)s)"
    )
    t.add_argument(
        "--scale-min",
        type=float,
        default=TrainRequest.scale_min,
        help="scale-jitter range, low end (%(default)s)",
    )
    t.add_argument(
        "--scale-max",
        type=float,
        default=TrainRequest.scale_max,
        help="scale-jitter range, high end (%(default)s)",
    )
    t.add_argument("--no-scale-jitter", action="store_true", help="train at one scale")
    t.add_argument("--no-mixed-precision", action="store_true", help="train in float32 on CUDA")
    t.add_argument(
        "--device", choices=DEVICES, default=TrainRequest.device, help="(default: cuda if available)"
    )
    t.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's)")
    t.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default=TrainRequest.progress,
        help="a progress bar on stderr, or one JSON object per line on stdout (for the app)",
    )
    t.add_argument("--resume", action="store_true", help=f"continue from RUN/{LAST_CHECKPOINT}")
    t.add_argument("--name", help="model name stored in the checkpoint (default: the run folder's name)")
    t.add_argument(
        "--tier",
        choices=TIERS,
        default=TrainRequest.tier,
        help="heads: train the RPN, box and mask heads on cached features of a frozen backbone + FPN; "
        f"full: backbone stages too, with augmentation; auto: heads on a CPU or under "
        f"{HEADS_TIER_MAX_IMAGES} images (%(default)s); heads refuses --trainable-backbone-layers and "
        "--scale-min/--scale-max, and auto says when it does not apply them",
    )
    t.add_argument(
        "--feature-cache-memory-mb",
        metavar="MB",
        help="heads tier: keep the cached features in memory up to this many MiB, then in RUN/"
        "feature_cache (0: always there; default: half the memory available)",
    )
    t.set_defaults(run=_train)

    p = sub.add_parser(
        "predict",
        help="segment a folder of images into COCO results",
        formatter_class=fmt,
        epilog="examples:\n  maskrcnn-core predict --weights runs/exp1/model_final.pt "
        "--images photos --out results.json\n"
        "  torchrun --nproc-per-node 4 -m maskrcnn_core predict ... (each process predicts every 4th image; "
        "the first merges them into --out)",
    )
    p.add_argument("--weights", required=True, help="checkpoint file, or 'coco' / 'coco-v2'")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--coco", help="COCO file listing the images (its image ids are used in the results)")
    p.add_argument("--out", required=True, help="COCO results JSON to write")
    p.add_argument(
        "--score-thresh", type=float, default=0.05, help="keep detections scoring at least this (0.05)"
    )
    p.add_argument("--batch-size", type=int, default=2, help="images per forward pass (default 2)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="(default: cuda if available)")
    p.add_argument("--num-threads", type=int, help="CPU threads for torch")
    _add_backend_flags(p)
    _add_tile_flags(p)
    p.add_argument(
        "--progress", choices=["bar", "none"], default="bar", help="a progress bar on stderr, or none"
    )
    p.set_defaults(run=_predict)

    e = sub.add_parser(
        "evaluate",
        help="COCO box and mask AP",
        formatter_class=fmt,
        epilog="examples:\n  maskrcnn-core evaluate --gt val.json --pred results.json\n"
        "  maskrcnn-core evaluate --gt val.json --weights model.pt --images val_images --json",
    )
    e.add_argument("--gt", required=True, help="ground-truth COCO annotations")
    e.add_argument("--pred", help="COCO results JSON (from predict)")
    e.add_argument("--weights", help="evaluate this checkpoint directly instead of --pred")
    e.add_argument("--images", help="image folder for --weights")
    e.add_argument("--device", choices=["cpu", "cuda"], help="(default: cuda if available)")
    e.add_argument("--num-threads", type=int, help="CPU threads for torch")
    _add_backend_flags(e)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(run=_evaluate)

    from maskrcnn_core.data.synthetic import LARGE_SCENE_FORMATS

    s = sub.add_parser(
        "synthetic",
        help="generate a synthetic shapes dataset (images + COCO JSON)",
        epilog="example:\n  maskrcnn-core synthetic data/train --num-images 400 --seed 1",
        formatter_class=fmt,
    )
    s.add_argument("out", help="output folder")
    s.add_argument("--num-images", type=int, default=100, help="how many images to draw (100)")
    s.add_argument("--seed", type=int, default=0, help="the same seed draws the same files (0)")
    s.add_argument("--height", type=int, default=192, help="image height in pixels (192)")
    s.add_argument("--width", type=int, default=256, help="image width in pixels (256)")
    s.add_argument("--split", default="train", help="name of the split (used in the JSON file name)")
    s.add_argument(
        "--objects",
        type=int,
        help="a large scene of this many shapes 20-60 px wide, the size the demo model learnt them at "
        "(the default for a side of 2048 px or more: one per 400 x 400 px)",
    )
    s.add_argument(
        "--format",
        choices=LARGE_SCENE_FORMATS,
        default=LARGE_SCENE_FORMATS[0],
        help=f"a large scene's file: tiled TIFF or PNG ({LARGE_SCENE_FORMATS[0]})",
    )
    s.set_defaults(run=_synthetic)

    w = sub.add_parser(
        "weights",
        help="list or download pretrained weights (torchvision's COCO Mask R-CNN)",
        epilog="examples:\n  maskrcnn-core weights list\n  maskrcnn-core weights download coco-v2\n\n"
        "Files go to torch hub's cache ($TORCH_HOME/hub/checkpoints). MASKRCNN_WEIGHTS_URL replaces "
        "the download URL (a mirror).",
        formatter_class=fmt,
    )
    w.add_argument("action", choices=["list", "download"], help="list the catalogue, or download NAMEs")
    w.add_argument("names", nargs="*", metavar="NAME", help="weights to download (coco, coco-v2)")
    w.set_defaults(run=_weights)
    return parser
