"""The exports written as a folder (YOLO, label images), behind one call for the window and the command
line alike (no Qt, no torch)."""

from __future__ import annotations

from pathlib import Path

from app.project.export_options import ExportOnly, FolderFormat
from app.project.label_image_io import LabelExportSummary, export_label_images
from app.project.store import ProjectStore
from app.project.yolo_io import YoloExportSummary, export_yolo


def export_folder(
    store: ProjectStore,
    out: Path,
    folder_format: FolderFormat,
    *,
    only: ExportOnly | None = None,
    score_threshold: float | None = None,
    val_fraction: float = 0.0,
) -> YoloExportSummary | LabelExportSummary:
    """Write the project's annotations into the new (or empty) folder ``out`` as ``folder_format``;
    ``val_fraction`` is YOLO's train/val split. Raises ``ValueError`` naming what is wrong."""
    if folder_format == "yolo":
        return export_yolo(store, out, val_fraction=val_fraction, only=only, score_threshold=score_threshold)
    if folder_format in ("label-png", "label-tif"):
        suffix = ".png" if folder_format == "label-png" else ".tif"
        return export_label_images(store, out, suffix=suffix, only=only, score_threshold=score_threshold)
    raise ValueError(f"unknown folder export format {folder_format!r}")
