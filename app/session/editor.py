"""The editing session of the open project: selection, current category, brush size, hidden instances,
the active tool, and the edit actions of the menus (delete, merge, split, accept, …).

Every change of annotations is a command from :mod:`app.session.commands` pushed on the window's undo stack;
nothing here writes to the document directly. Selection and hiding are view state, not edits.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from app.project.mask_ops import fill_holes
from app.project.records import ImageStatus, InstanceRecord
from app.session import commands
from app.session.commands import EditCommand, EditContext
from app.session.document import Document, ReadOnlyDocumentError
from app.session.views import CanvasView, EditingTool
from maskrcnn_core.masks import rle_to_mask

MIN_BRUSH, MAX_BRUSH, DEFAULT_BRUSH = 1, 1000, 15  # diameters; the default in screen pixels
DEFAULT_CATEGORY = "object"


class Editor(QObject):
    """Owned by the project's document (deleted with it). ``push`` is the one way edits happen."""

    selectionChanged = Signal(list)  # instance ids
    currentCategoryChanged = Signal(int)  # category id, -1 for none
    brushSizeChanged = Signal(int)  # diameter in image pixels, after [ / ] or Ctrl+wheel
    toolChanged = Signal(str)
    message = Signal(str)

    def __init__(
        self,
        document: Document,
        undo_stack: QUndoStack,
        canvas: CanvasView,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent if parent is not None else document)
        self.document = document
        self.undo_stack = undo_stack
        self.canvas = canvas
        self.context = EditContext(document, self.message.emit)
        self._selection: list[int] = []
        self._hidden: set[int] = set()
        self._category = -1
        # The brush keeps its size on screen: [ / ] change the diameter in screen pixels, and the
        # diameter in image pixels (what a stroke paints) follows the zoom.
        self.brush_screen_size = float(DEFAULT_BRUSH)
        self._view_scale = 1.0  # screen pixels per image pixel
        self.brush_size = DEFAULT_BRUSH
        self.tools: dict[str, EditingTool] = {}
        self.tool: EditingTool | None = None
        document.currentImageChanged.connect(self._image_changed)
        document.instancesChanged.connect(self._instances_changed)
        document.categoriesChanged.connect(self._categories_changed)
        self._categories_changed()

    # ------------------------------------------------------------------------------------------- tools
    def add_tool(self, tool: EditingTool) -> None:
        self.tools[tool.name] = tool

    def set_tool(self, name: str) -> None:
        tool = self.tools[name]
        if tool is self.tool:
            return
        if self.tool is not None:
            self.tool.deactivate()
        self.tool = tool
        self.canvas.tool = tool
        tool.activate()
        self.toolChanged.emit(name)

    def cancel_gesture(self) -> None:
        if self.tool is not None:
            self.tool.cancel()

    def detach(self) -> None:
        """Stop receiving canvas input (the project is closing)."""
        if self.tool is not None:
            self.tool.deactivate()
        self.canvas.tool = None
        self.tool = None

    # ------------------------------------------------------------------------------------------- state
    @property
    def image_id(self) -> int:
        return self.document.current_image_id

    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the current image, once it has been read."""
        if self.image_id < 0:
            return None
        image = self.document.image(self.image_id)
        if image.height is None or image.width is None:
            return None
        return image.height, image.width

    def instances(self) -> list[InstanceRecord]:
        """The instances shown on the current image, in drawing order."""
        return [] if self.image_id < 0 else self.document.visible_instances(self.image_id)

    def selection(self) -> list[int]:
        return list(self._selection)

    def selected_records(self) -> list[InstanceRecord]:
        by_id = {r.id: r for r in self.instances()}
        return [by_id[i] for i in self._selection if i in by_id]

    def select(self, instance_ids: Sequence[int]) -> None:
        ids = [self.context.resolve(i) for i in instance_ids]
        if ids == self._selection:
            return
        self._selection = ids
        self.canvas.set_selection(ids)
        self.selectionChanged.emit(list(ids))

    def select_one(self, instance_id: int) -> None:
        self.select([instance_id])

    def toggle_selected(self, instance_id: int) -> None:
        ids = list(self._selection)
        ids.remove(instance_id) if instance_id in ids else ids.append(instance_id)
        self.select(ids)

    def cycle_selection(self, step: int = 1) -> None:
        """Select the next (or previous) shown instance: Tab / Shift+Tab."""
        ids = [r.id for r in self.instances() if r.id not in self._hidden]
        if not ids:
            return
        if len(self._selection) == 1 and self._selection[0] in ids:
            index = (ids.index(self._selection[0]) + step) % len(ids)
        else:
            index = 0 if step > 0 else len(ids) - 1
        self.select([ids[index]])

    @property
    def current_category(self) -> int:
        """The category new instances get (-1 until the project has one)."""
        return self._category

    def set_current_category(self, category_id: int) -> None:
        if category_id == self._category:
            return
        self._category = category_id
        self.currentCategoryChanged.emit(category_id)

    def category_for_new(self) -> int:
        """The current category, creating a first one ("object") in an empty project (not an undo step:
        see :meth:`Document.ensure_categories`)."""
        if self._category < 0:
            self.set_current_category(self.document.ensure_categories([DEFAULT_CATEGORY])[DEFAULT_CATEGORY])
        return self._category

    def set_brush_size(self, diameter: int) -> None:
        """Set the diameter in image pixels (at the current zoom; its size on screen is kept from now)."""
        diameter = int(min(max(diameter, MIN_BRUSH), MAX_BRUSH))
        self.brush_screen_size = diameter * self._view_scale
        if diameter != self.brush_size:
            self.brush_size = diameter
            self.brushSizeChanged.emit(diameter)

    def grow_brush(self, steps: int) -> None:
        """``[`` / ``]`` and Ctrl+wheel: about 20 % per step on screen, at least one image pixel."""
        size = self.brush_screen_size
        for _ in range(abs(steps)):
            size = size * 1.2 if steps > 0 else size / 1.2
        image_size = self._image_diameter(size)
        if image_size == self.brush_size:  # too small a step to show at this zoom: one pixel more or less
            image_size = int(min(max(image_size + (1 if steps > 0 else -1), MIN_BRUSH), MAX_BRUSH))
            size = image_size * self._view_scale
        self.brush_screen_size = size
        if image_size != self.brush_size:
            self.brush_size = image_size
            self.brushSizeChanged.emit(image_size)

    def set_view_scale(self, scale: float) -> None:
        """The canvas zoomed (``scale`` screen pixels per image pixel): the brush keeps its screen size,
        so its diameter in image pixels changes (silently: no size was chosen)."""
        if scale <= 0:
            return
        self._view_scale = scale
        self.brush_size = self._image_diameter(self.brush_screen_size)

    def _image_diameter(self, screen_size: float) -> int:
        return int(min(max(round(screen_size / self._view_scale), MIN_BRUSH), MAX_BRUSH))

    # ------------------------------------------------------------------------------------------ edits
    def push(self, command: QUndoCommand | None, *, select_added: bool = True) -> bool:
        """Run and record ``command`` (``None``: nothing to do). Instances it adds become the selection."""
        if command is None:
            return False
        try:
            self.document.check_writable()
        except ReadOnlyDocumentError as exc:  # said, not recorded: the history holds only what was saved
            self.message.emit(str(exc))
            return False
        self.undo_stack.push(command)
        if select_added and isinstance(command, EditCommand) and command.added_ids:
            self.select(command.added_ids)
        return True

    def delete_selected(self) -> None:
        self.push(commands.delete_instances(self.context, self.selected_records()))

    def set_category_of_selection(self, category_id: int) -> None:
        records = self.selected_records()
        if not records:
            self.message.emit("Select instances first (click them, or Tab)")
            return
        self.push(commands.set_category(self.context, records, category_id))

    def fill_holes_selected(self) -> None:
        records = self._need_selection(1)
        if not records:
            return
        self.undo_stack.beginMacro("Fill holes")  # one undo step however many instances
        for record in records:
            mask = fill_holes(rle_to_mask(record.rle))
            self.push(commands.edit_mask(self.context, record, mask, "Fill holes"))
        self.undo_stack.endMacro()

    def merge_selected(self) -> None:
        records = self.selected_records()
        if len(records) < 2:
            self.message.emit("Select two or more instances to merge (Ctrl+click)")
            return
        self.push(commands.merge_instances(self.context, records))
        self.select([records[0].id])

    def split_selected(self) -> None:
        records = self._need_selection(1)
        if not records:
            return
        command = commands.split_instance(self.context, records[0])
        if command is None:
            self.message.emit("This instance is one connected part: nothing to split")
            return
        self.push(command, select_added=False)
        self.select([records[0].id, *command.added_ids])

    def accept_selected(self) -> None:
        records = self.selected_records()
        if not records:
            self.message.emit("Select instances to accept, or accept the whole image (Shift+A)")
            return
        self.push(commands.verify(self.context, self.image_id, records))

    def accept_image(self) -> None:
        if self.image_id < 0:
            return
        verified = self.document.image(self.image_id).status is ImageStatus.VERIFIED
        command = commands.verify(
            self.context, self.image_id, self.instances(), whole_image=True, image_was_verified=verified
        )
        if not self.push(command):
            self.message.emit("This image is already verified")

    def toggle_hidden(self) -> None:
        """Hide the selected instances, or show them again when they are all hidden."""
        ids = set(self._selection)
        if not ids:
            return
        self._hidden = self._hidden - ids if ids <= self._hidden else self._hidden | ids
        self.canvas.set_hidden(self._hidden)

    def show_all(self) -> None:
        self._hidden = set()
        self.canvas.set_hidden(self._hidden)

    def hidden(self) -> set[int]:
        return set(self._hidden)

    def _need_selection(self, count: int) -> list[InstanceRecord]:
        records = self.selected_records()
        if len(records) < count:
            self.message.emit("Select an instance first (click it, or Tab)")
        return records

    # ------------------------------------------------------------------------------------- document
    def _image_changed(self, _image_id: int) -> None:
        if self.tool is not None:
            self.tool.cancel()
        self._hidden = set()
        self.canvas.set_hidden(self._hidden)
        self.select([])

    def _instances_changed(self, image_id: int) -> None:
        if image_id != self.image_id:
            return
        present = {r.id for r in self.instances()}
        kept = [i for i in (self.context.resolve(i) for i in self._selection) if i in present]
        if kept != self._selection:
            self.select(kept)
        else:
            self.canvas.set_selection(kept)
        self._hidden &= present

    def _categories_changed(self) -> None:
        ids = [c.id for c in self.document.categories()]
        if self._category not in ids:
            self.set_current_category(ids[0] if ids else -1)
