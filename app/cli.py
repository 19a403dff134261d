"""``maskrcnn-studio import`` and ``maskrcnn-studio export``: the project store from the command line.

No display needed and no Qt imported. Errors are one line on stderr and exit status 1 (2 for usage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app.project.coco_io import export_coco, import_annotations
from app.project.store import ProjectStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskrcnn-studio", description="Mask R-CNN Studio project commands")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import", help="add the annotations of a COCO or labelme file (or a folder of labelme files)"
    )
    imp.add_argument("folder", type=Path, help="the images folder (its project is created if needed)")
    imp.add_argument(
        "coco_json",
        type=Path,
        help="COCO instances JSON (file_names relative to FOLDER), a labelme JSON, or a folder of them",
    )
    exp = sub.add_parser("export", help="write FOLDER's annotations as a COCO file")
    exp.add_argument("folder", type=Path)
    exp.add_argument(
        "--out", type=Path, required=True, help="the COCO JSON file to write (replaced atomically)"
    )
    exp.add_argument(
        "--format", choices=("rle", "polygon"), default="rle", help="mask encoding (default: rle)"
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
    for p in (imp, exp):
        p.add_argument(
            "--project-dir", type=Path, default=None, help="where the project lives when FOLDER is read-only"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with ProjectStore.open(args.folder, project_dir=args.project_dir) as store:
            if args.command == "import":
                summary = import_annotations(store, args.coco_json)
                print(f"imported {summary.added} annotations on {summary.images} images into {store.db_path}")
                print(summary.report)
            else:
                summary = export_coco(
                    store,
                    args.out,
                    segmentation=args.format,
                    score_threshold=args.score_threshold,
                    only=args.only,
                )
                print(f"wrote {summary.annotations} annotations on {summary.images} images to {args.out}")
                for line in summary.skipped_images:
                    print(f"left out {line}", file=sys.stderr)
    except ValueError as exc:  # every expected failure is a ValueError subclass with a message
        print(f"maskrcnn-studio {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
