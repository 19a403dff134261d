"""Box prompt: drag a box, and the model's mask head segments the object in it.

The request goes to the inference worker (``Predictor.segment_boxes``: ``MaskRCNN`` run on that RoI, in the
worker thread); the answer arrives as a queued signal and becomes one undo command that adds the instance
(provenance ``edited``: a person asked for it, so no model run ever replaces it). The category is the
model's class for the box, or, with "use the model's category" off, the current category, whose mask
head is then used when the model knows a class of that name.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from app.project.records import ImageResult, Provenance
from app.session import commands
from app.session.editor import Editor
from app.session.segmentation import SegmentationController
from app.ui.canvas.view import Canvas
from app.ui.tools.base import Tool, alive
from maskrcnn_core.masks import rle_to_mask

MIN_BOX = 2.0  # pixels: a smaller drag is a click, not a box


class BoxPrompter(QObject):
    """Sends drawn boxes to the worker and turns its answers into commands."""

    def __init__(self, editor: Editor, segmentation: SegmentationController) -> None:
        super().__init__(editor)
        self.editor = editor
        self.segmentation = segmentation
        self.use_model_category = True
        self._pending: dict[int, int] = {}  # job id -> image id
        self._unknown: dict[int, str] = {}  # job id -> its category that the model does not know
        segmentation.boxReady.connect(self._on_result)

    def request(self, image_id: int, box: tuple[float, float, float, float]) -> int | None:
        model = self.segmentation.model
        if model is None:
            self.editor.message.emit(f"Box prompt: {self.segmentation.no_model_reason()}")
            return None
        label = None
        unknown = ""  # the current category, when the model has no class of that name
        if not self.use_model_category and self.editor.current_category >= 0:
            name = self.editor.document.category(self.editor.current_category).name
            classes = model.info.class_map
            label = classes.name_to_label(name) if classes.has_name(name) else None
            unknown = name if label is None else ""
        job_id = self.segmentation.segment_box(image_id, box, label)
        self._pending[job_id] = image_id
        if unknown:
            self._unknown[job_id] = unknown
            self.editor.message.emit(f"Box prompt: segmenting… {unknown_category_note(unknown)}")
        else:
            self.editor.message.emit("Box prompt: segmenting…")
        return job_id

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def _on_result(self, job_id: int, result: ImageResult) -> None:
        image_id = self._pending.pop(job_id, None)
        unknown = self._unknown.pop(job_id, "")
        if image_id is None:
            return
        editor = self.editor
        if result.error is not None:
            editor.message.emit(f"Box prompt failed: {result.error}")
            return
        if not result.detections:
            editor.message.emit("Box prompt: the model found no object in that box")
            return
        detection = result.detections[0]
        if self.use_model_category:
            # The model's class becomes a category if the project lacks it; not an undo step (undoing the
            # instance leaves the category empty), see Document.ensure_categories.
            category = editor.document.ensure_categories([detection.category_name])[detection.category_name]
        else:
            category = editor.category_for_new()
        command = commands.add_instance(
            editor.context,
            image_id,
            rle_to_mask(detection.rle),
            category,
            "Box prompt",
            provenance=Provenance.EDITED,
            score=detection.score,
            model_version_id=self.segmentation.model_version_id,
        )
        editor.push(command, select_added=image_id == editor.image_id)
        if unknown:
            note = f"the mask of its class '{detection.category_name}' (score {detection.score:.2f})"
            editor.message.emit(f"Box prompt: {unknown_category_note(unknown)}: added with {note}")
        else:
            editor.message.emit(f"Box prompt: added {detection.category_name}, score {detection.score:.2f}")


def unknown_category_note(category: str) -> str:
    """What the box prompt says when the current category is not one of the model's classes."""
    return f"the model does not know '{category}'"


class BoxPromptTool(Tool):
    name = "box"
    label = "Box prompt"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, editor: Editor, canvas: Canvas) -> None:
        super().__init__(editor, canvas)
        self.prompter: BoxPrompter | None = None
        self._start: QPointF | None = None
        self._item: QGraphicsRectItem | None = None

    def cancel(self) -> None:
        self._start = self._item = None
        self.clear_items()

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.editor.image_size() is None:
            return
        self._start = pos
        self._item = QGraphicsRectItem()
        pen = QPen(QColor(0, 220, 255), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._item.setPen(pen)
        self.add_item(self._item)
        self.move(pos, event)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._start is not None and alive(self._item):
            self._item.setRect(QRectF(self._start, pos).normalized())

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._start is None:
            return
        start = self._start
        self.cancel()
        size = self.editor.image_size()
        if size is None:  # the image went away during the drag
            return
        height, width = size
        x0, x1 = sorted((min(max(start.x(), 0.0), width), min(max(pos.x(), 0.0), width)))
        y0, y1 = sorted((min(max(start.y(), 0.0), height), min(max(pos.y(), 0.0), height)))
        if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
            self.editor.message.emit("Box prompt: drag a box around the object")
            return
        if self.prompter is None:
            self.editor.message.emit("Box prompt: no model is loaded")
            return
        self.prompter.request(self.editor.image_id, (x0, y0, x1, y1))
