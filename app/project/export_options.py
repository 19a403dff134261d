"""What an export can be asked for: its formats and which images it writes, each with the words the
window shows for it. The export itself is :func:`app.project.coco_io.export_coco`; the last choices are
kept per project (:class:`app.project.settings.ProjectSettings`)."""

from __future__ import annotations

from typing import Literal

# What the COCO export writes the masks as, the formats written as a folder (app.project.folder_exports),
# and which images an export keeps (None: every image looked at).
ExportFormat = Literal["rle", "polygon"]
FolderFormat = Literal["yolo", "label-png", "label-tif"]
ExportOnly = Literal["verified", "annotated"]

# Format key -> what the export dialog calls it. A format to come is one more entry (and its writer).
EXPORT_FORMATS: dict[ExportFormat | FolderFormat, str] = {
    "rle": "COCO, masks as RLE (pixel-exact)",
    "polygon": "COCO, masks as polygons",
    "yolo": "YOLO segmentation dataset: a folder (holes are filled)",
    "label-png": "Label images, 16-bit PNG, and a class table: a folder",
    "label-tif": "Label images, 16-bit TIFF, and a class table: a folder",
}
COCO_FORMATS: tuple[ExportFormat, ...] = ("rle", "polygon")
FOLDER_FORMATS: tuple[FolderFormat, ...] = ("yolo", "label-png", "label-tif")

# Which images -> what the dialog calls it; the key is export_coco's ``only`` (``"all"``: ``None``).
EXPORT_ALL_IMAGES: Literal["all"] = "all"
EXPORT_IMAGES: dict[ExportOnly | Literal["all"], str] = {
    EXPORT_ALL_IMAGES: "Every image a person or the model has looked at",
    "annotated": "Only images a person edited or verified",
    "verified": "Only verified images",
}
