"""What an export can be asked for: its formats and which images it writes, each with the words the
window shows for it. The export itself is :func:`app.project.coco_io.export_coco`; the last choices are
kept per project (:class:`app.project.settings.ProjectSettings`)."""

from __future__ import annotations

from typing import Literal

# What the export writes the masks as, and which images it keeps (None: every image looked at).
ExportFormat = Literal["rle", "polygon"]
ExportOnly = Literal["verified", "annotated"]

# Format key -> what the export dialog calls it. A format to come is one more entry (and its writer).
EXPORT_FORMATS: dict[ExportFormat, str] = {
    "rle": "COCO, masks as RLE (pixel-exact)",
    "polygon": "COCO, masks as polygons",
}

# Which images -> what the dialog calls it; the key is export_coco's ``only`` (``"all"``: ``None``).
EXPORT_ALL_IMAGES: Literal["all"] = "all"
EXPORT_IMAGES: dict[ExportOnly | Literal["all"], str] = {
    EXPORT_ALL_IMAGES: "Every image a person or the model has looked at",
    "annotated": "Only images a person edited or verified",
    "verified": "Only verified images",
}
