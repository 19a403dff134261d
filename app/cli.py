"""``maskrcnn-studio import``, ``export``, ``segment``, ``review`` and ``repair``: the project from the
command line.

No display needed. ``import``, ``export`` and ``review`` import neither Qt nor torch; ``segment`` runs the
app's own inference worker and document (QtCore, no event loop, no window), so its results are stored by
the same rules as the app's "Auto-segment all". Errors are one line on stderr and exit status 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app.project import model_sources
from app.project.coco_io import CROWD_AS_INSTANCES_FLAG, export_coco, import_annotations
from app.project.export_options import EXPORT_FORMATS, FOLDER_FORMATS
from app.project.folder_exports import export_folder
from app.project.label_image_io import (
    CLASS_TABLE,
    CLASS_TABLE_COLUMNS,
)
from app.project.predictions_io import import_predictions
from app.project.records import ImageResult
from app.project.review_queue import queue_arrays, review_order
from app.project.store import ProjectStore
from maskrcnn_core.paths import check_output_dir, check_output_file, one_line_error, unreadable_reason
from maskrcnn_core.protocol import ExitCode

# The exit status of a command stopped with Ctrl+C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskrcnn-studio", description="Mask R-CNN Studio project commands")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import",
        help="add annotations (COCO, labelme, a YOLO dataset, label images) or, with --predictions, a COCO "
        "results file's predictions",
    )
    imp.add_argument("folder", type=Path, help="the images folder (its project is created if needed)")
    imp.add_argument(
        "coco_json",
        metavar="SOURCE",
        type=Path,
        help="COCO instances JSON (file_names relative to FOLDER), a labelme JSON or a folder of them, a "
        "YOLO segmentation dataset folder (data.yaml, labels/), or a folder of label images",
    )
    imp.add_argument(
        CROWD_AS_INSTANCES_FLAG,
        action="store_true",
        help="a COCO file whose every annotation is an RLE crowd region (CVAT's brush masks): import them "
        "as instances (default: as crowd regions, with a line in the report)",
    )
    imp.add_argument(
        "--class-table",
        type=Path,
        default=None,
        help=f"label images: the CSV ({','.join(CLASS_TABLE_COLUMNS)}) giving each label its category "
        f"(default: the folder's {CLASS_TABLE})",
    )
    imp.add_argument("--category", default=None, help="label images: one category for every instance")
    imp.add_argument(
        "--predictions",
        action="store_true",
        help="SOURCE is a COCO results file (maskrcnn-core predict's output): store its detections as "
        "predictions, as auto-segmentation does (corrected and verified images are left alone)",
    )
    imp.add_argument("--model", default=None, help="--predictions: the model's name (default: the file's)")
    imp.add_argument(
        "--image-list",
        type=Path,
        default=None,
        help="--predictions: the COCO file predict was given (its image ids and category names)",
    )
    exp = sub.add_parser(
        "export", help="write FOLDER's annotations as a COCO file, a YOLO dataset or label images"
    )
    exp.add_argument("folder", type=Path)
    exp.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the COCO JSON file to write (replaced atomically), or the new folder for yolo and label images",
    )
    exp.add_argument(
        "--format",
        choices=tuple(EXPORT_FORMATS),
        default="rle",
        help="COCO with RLE or polygon masks, a YOLO segmentation dataset, or 16-bit label images (PNG or "
        "TIFF) with a class table (default: rle)",
    )
    exp.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="yolo: the share of images for validation (default: 0, every image in train)",
    )
    exp.add_argument(
        "--only",
        choices=("verified", "annotated"),
        default=None,
        help="only verified images, or only images a person edited or verified (default: every image "
        "a person or the model has looked at)",
    )
    exp.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="lowest score of predictions to include (default: the project's setting)",
    )
    seg = sub.add_parser(
        "segment",
        help="auto-segment FOLDER's new and predicted images into its project (corrected and verified "
        "images are left alone)",
    )
    seg.add_argument("folder", type=Path, help="the images folder (its project is created if needed)")
    seg.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="the checkpoint to segment with; it becomes the project's model (default: the project's "
        "model, else the bundled demo model)",
    )
    seg.add_argument("--batch-size", type=_positive_int, default=1, help="images per model call (default: 1)")
    rev = sub.add_parser(
        "review",
        help="print FOLDER's images in review order, most uncertain first (file, score, why): the images "
        "not yet corrected or verified that a model scored when it segmented them",
    )
    rev.add_argument("folder", type=Path, help="the images folder (segmented by the app or `segment`)")
    rev.add_argument("--top", type=_positive_int, default=None, help="print only the first N")
    rep = sub.add_parser(
        "repair",
        help="rebuild a damaged project file from what is readable (the damaged file is kept beside it)",
    )
    rep.add_argument("folder", type=Path, help="the images folder whose project file is damaged")
    for p in (imp, exp, seg, rev, rep):
        p.add_argument(
            "--project-dir", type=Path, default=None, help="where the project lives when FOLDER is read-only"
        )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "segment":
        return _run_segment(args)
    if args.command == "repair":
        return _run_repair(args)
    if args.command == "review":
        return _run_review(args)
    try:
        if args.command == "export" and args.format not in FOLDER_FORMATS:
            check_output_file(args.out)  # before the project opens: a bad --out costs nothing
        elif args.command == "export":
            check_output_dir(args.out)
        with ProjectStore.open(args.folder, project_dir=args.project_dir) as store:
            if args.command == "export" and args.format not in FOLDER_FORMATS:
                # the project folder may live outside FOLDER: checked once known
                check_output_file(args.out, project_dir=store.db_path.parent)
            if args.command == "import" and args.predictions:
                predicted = import_predictions(
                    store, args.coco_json, model_name=args.model, image_list=args.image_list
                )
                print(f"{predicted.headline()} (into {store.db_path})")
                if predicted.report:
                    print(predicted.report)
            elif args.command == "import":
                imported = import_annotations(
                    store,
                    args.coco_json,
                    crowd_as_instances=args.crowd_as_instances,
                    class_table=args.class_table,
                    category=args.category,
                )
                print(f"{imported.headline()} (into {store.db_path})")
                print(imported.report)
            elif args.format in FOLDER_FORMATS:
                _export_folder(store, args)
            else:
                exported = export_coco(
                    store,
                    args.out,
                    segmentation=args.format,
                    score_threshold=args.score_threshold,
                    only=args.only,
                )
                print(f"wrote {exported.annotations} annotations on {exported.images} images to {args.out}")
                for line in exported.skipped_images:
                    print(f"left out {line}", file=sys.stderr)
    except (ValueError, OSError) as exc:  # every expected failure: a ValueError subclass with a message,
        # or an OSError (a disk that filled, a file that vanished after the checks)
        print(f"maskrcnn-studio {args.command}: {one_line_error(exc)}", file=sys.stderr)
        return ExitCode.FAILED
    return 0


def _export_folder(store: ProjectStore, args: argparse.Namespace) -> None:
    """``export --format yolo | label-png | label-tif``: a folder, checked by the writer itself."""
    summary = export_folder(
        store,
        args.out,
        args.format,
        only=args.only,
        score_threshold=args.score_threshold,
        val_fraction=args.val_fraction,
    )
    print(f"{summary.headline()} in {args.out}")
    for note in summary.notes:
        print(f"note: {note}")
    for line in summary.skipped_images:
        print(f"left out {line}", file=sys.stderr)


def _run_review(args: argparse.Namespace) -> int:
    try:
        with ProjectStore.open(args.folder, project_dir=args.project_dir) as store:
            images = store.images()
            stored = store.image_uncertainties()
    except (ValueError, OSError) as exc:
        print(f"maskrcnn-studio review: {one_line_error(exc)}", file=sys.stderr)
        return ExitCode.FAILED
    scores, features, eligible = queue_arrays(images, stored)
    order, penalties = review_order(scores, features, eligible, top=args.top)
    if not len(order):
        print(
            "maskrcnn-studio review: no image to review: none of the new or predicted images has a score "
            f"(segment them first: maskrcnn-studio segment {args.folder})",
            file=sys.stderr,
        )
        return 0
    for row, penalty in zip(order.tolist(), penalties.tolist(), strict=True):
        image = images[row]
        why = stored[image.id].reason
        if penalty > 0:
            why += f"; close to an image before it in the queue (-{penalty:.2f})"
        print(f"{image.file_name}\t{scores[row]:.3f}\t{why}")
    return 0


def _run_repair(args: argparse.Namespace) -> int:
    from app.project.repair import repair_project

    try:
        print(repair_project(args.folder, project_dir=args.project_dir).headline())
    except (ValueError, OSError) as exc:
        print(f"maskrcnn-studio repair: {one_line_error(exc)}", file=sys.stderr)
        return ExitCode.FAILED
    return 0


def _run_segment(args: argparse.Namespace) -> int:
    try:
        weights = model_sources.resolve(str(args.weights)) if args.weights is not None else None
        reason = unreadable_reason(weights) if weights is not None else None
        if reason is not None:
            raise ValueError(f"--weights {args.weights}: {reason}")
        with ProjectStore.open(args.folder, project_dir=args.project_dir) as store:
            segment_folder(store, weights=weights, batch_size=args.batch_size)
    except KeyboardInterrupt:
        print("maskrcnn-studio segment: interrupted; the images already segmented are saved", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, OSError) as exc:
        print(f"maskrcnn-studio segment: {one_line_error(exc)}", file=sys.stderr)
        return ExitCode.FAILED
    return 0


def segment_folder(store: ProjectStore, *, weights: Path | None = None, batch_size: int = 1) -> int:
    """Auto-segment the project's new and predicted images, as "Auto-segment all" does; returns how many
    images got a result.

    The app's own parts do the work: the project document scans the folder, picks the images
    (``images_to_segment``) and stores each result (``apply_result``: untouched predictions replaced,
    a person's instances kept); the model registry picks the model (``weights``, else the project's
    active model, else the bundled demo model) and registers it as a version; the inference worker runs
    the predictor, here in this thread. Each image is committed once segmented, so an interrupted run
    keeps what it finished. Progress is a bar on stderr; a ``ValueError`` says why the model cannot run.
    """
    from tqdm import tqdm

    from app.project.model_sources import bundled_demo_model
    from app.session.document import Document
    from app.session.model_registry import ActiveModel
    from app.workers.inference import InferenceWorker, Job, LoadedModel, checkpoint_factory

    document = Document(store)
    document.scan()
    registry = document.models
    chosen: list[ActiveModel] = []
    messages: list[str] = []
    registry.activeChanged.connect(chosen.append)
    registry.message.connect(messages.append)
    demo = bundled_demo_model()
    registry.restore(weights=str(weights) if weights else None, fallback=str(demo) if demo else None)
    if not chosen:
        raise ValueError(messages[-1] if messages else "the project has no model yet: pass --weights CKPT")
    active = chosen[-1]

    worker = InferenceWorker()
    loaded: list[LoadedModel] = []
    failed: list[str] = []
    worker.modelLoaded.connect(loaded.append)
    worker.modelFailed.connect(failed.append)
    worker.load(checkpoint_factory(active.path), active.path)
    if not loaded:
        registry.load_failed(active)
        raise ValueError(f"cannot load the model {active.path}: {failed[-1] if failed else 'unknown error'}")
    model = loaded[-1]
    version_id = registry.loaded(active, model.info, model.sha256)

    todo, skipped = document.images_to_segment()
    revisions = {image.id: image.revision for image in todo}
    items = tuple((image.id, str(document.image_path(image.id))) for image in todo)
    job = Job(1, items, batch_size, document.settings.tile_options())
    applied: list[str] = []
    left_out: list[str] = []
    errors: list[Exception] = []
    bar = tqdm(total=len(todo), desc=f"segment ({model.info.name} on {model.device})", unit="image")

    def on_result(job_id: int, result: ImageResult) -> None:  # a worker signal: exceptions would be lost
        try:
            outcome = document.apply_result(
                result, expected_revision=revisions[result.image_id], model_version_id=version_id
            )
        except Exception as exc:  # noqa: BLE001 - re-raised below, once the worker has stopped
            errors.append(exc)
            worker.cancel(job_id)
            return
        name = document.image(result.image_id).file_name
        if outcome.applied:
            applied.append(name)
        else:
            left_out.append(f"{name}: {outcome.reason}")

    def on_finished(_job: int, _cancelled: bool, error: str) -> None:
        if error:
            errors.append(ValueError(error))

    worker.resultReady.connect(on_result)
    worker.imageFailed.connect(
        lambda _job, image_id, error: left_out.append(f"{document.image(image_id).file_name}: {error}")
    )
    worker.progress.connect(lambda _job, done, _total: bar.update(done - bar.n))
    worker.jobFinished.connect(on_finished)
    try:
        worker.run(job)
    finally:
        bar.close()
    if errors:
        raise errors[0]
    print(
        f"segmented {len(applied)} images with {model.info.name} (model version {version_id}) into "
        f"{store.db_path}; left {skipped} corrected or verified images alone"
    )
    for line in left_out:
        print(f"left out {line}", file=sys.stderr)
    return len(applied)
