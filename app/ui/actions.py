"""The editing actions of the window: the Tools menu and toolbar (one checkable action per tool) and the
Edit menu's instance actions, each with its keyboard shortcut (Help ▸ Keyboard shortcuts lists them).

Built once with the window; :meth:`EditActions.set_editor` points them at the open project's
:class:`~app.session.editor.Editor` (or disables them when no project is open).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QInputDialog, QMainWindow, QMenu, QToolBar

from app.session.editor import Editor
from app.session.segmentation import SegmentationController
from app.ui.canvas.view import Canvas
from app.ui.tools.box_prompt import BoxPrompter, BoxPromptTool
from app.ui.tools.brush import BrushTool, EraserTool
from app.ui.tools.polygon import PolygonTool
from app.ui.tools.refine import RefineTool
from app.ui.tools.select import SelectTool

TOOL_SHORTCUTS = {"select": "V", "brush": "B", "eraser": "E", "polygon": "P", "box": "R"}


def install_tools(editor: Editor, canvas: Canvas, segmentation: SegmentationController | None) -> None:
    """Give ``editor`` its tools, working on ``canvas``, and select Select; the box prompt asks
    ``segmentation``'s worker."""
    # Before the tools connect theirs: a brush redraws its cursor after the editor has the new scale.
    canvas.zoomChanged.connect(editor.set_view_scale)  # the brush keeps its size on screen
    editor.set_view_scale(canvas.zoom_factor())
    for cls in (SelectTool, BrushTool, EraserTool, PolygonTool, RefineTool):
        editor.add_tool(cls(editor, canvas))
    box = BoxPromptTool(editor, canvas)
    if segmentation is not None:
        box.prompter = BoxPrompter(editor, segmentation)
    editor.add_tool(box)
    editor.set_tool("select")


class EditActions:
    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.editor: Editor | None = None
        self.tool_actions: dict[str, QAction] = {}
        self.group = QActionGroup(window)
        self.group.setExclusive(True)
        self.instance_actions: list[QAction] = []

    # ------------------------------------------------------------------------------------------ building
    def add_tool_action(self, menu: QMenu, toolbar: QToolBar, name: str, text: str) -> QAction:
        action = self._action(menu, text, lambda: self._on_editor(lambda e: e.set_tool(name)))
        action.setShortcut(QKeySequence(TOOL_SHORTCUTS[name]))
        action.setCheckable(True)
        self.group.addAction(action)
        toolbar.addAction(action)
        self.tool_actions[name] = action
        return action

    def populate(self, edit: QMenu, tools: QMenu, toolbar: QToolBar) -> None:
        """Fill the Edit menu (after Undo / Redo) and the Tools menu and toolbar."""
        for name, text in (
            ("select", "&Select"),
            ("brush", "&Brush"),
            ("eraser", "&Eraser"),
            ("polygon", "&Polygon"),
            ("box", "Bo&x prompt"),
        ):
            self.add_tool_action(tools, toolbar, name, text)
        tools.addSeparator()
        self.model_category_action = self._action(tools, "Box prompt: use the &model's category", None)
        self.model_category_action.setCheckable(True)
        self.model_category_action.setChecked(True)
        self.model_category_action.toggled.connect(self._set_model_category)
        self._edit(tools, "Larger brush", "]", lambda e: e.grow_brush(1))
        self._edit(tools, "Smaller brush", "[", lambda e: e.grow_brush(-1))
        edit.addSeparator()
        self._edit(edit, "Select &next instance", "Tab", lambda e: e.cycle_selection(1))
        self._edit(edit, "Select previous instance", "Shift+Tab", lambda e: e.cycle_selection(-1))
        self.delete_action = self._edit(
            edit, "&Delete instance", QKeySequence.StandardKey.Delete, lambda e: e.delete_selected()
        )
        self.hide_action = self._edit(edit, "&Hide / show instance", "H", lambda e: e.toggle_hidden())
        self._edit(edit, "Show all instances", "Shift+H", lambda e: e.show_all())
        self._edit(edit, "Change &category…", "C", self._choose_category)
        for n in range(1, 10):
            self._edit(
                edit, f"Set category {n}", str(n), partial(self._category_number, n=n), menu_item=False
            )
        edit.addSeparator()
        self._edit(edit, "&Fill holes", "F", lambda e: e.fill_holes_selected())
        self.merge_action = self._edit(edit, "&Merge instances", "M", lambda e: e.merge_selected())
        self.split_action = self._edit(edit, "Spli&t into parts", "Shift+M", lambda e: e.split_selected())
        self.refine_action = self._edit(edit, "&Refine with polygon", "Shift+P", self._refine)
        edit.addSeparator()
        self.accept_action = self._edit(edit, "&Accept instance", "A", lambda e: e.accept_selected())
        self._edit(edit, "Accept &image", "Shift+A", lambda e: e.accept_image())
        self.set_editor(None)

    def set_editor(self, editor: Editor | None) -> None:
        """Bind the actions to the open project's editor (``None``: no project, actions disabled)."""
        if self.editor is not None and editor is None:
            self.editor.detach()
        self.editor = editor
        for action in [*self.tool_actions.values(), *self.instance_actions]:
            action.setEnabled(editor is not None)
        if editor is not None:
            self._set_model_category(self.model_category_action.isChecked())
            editor.toolChanged.connect(self._tool_changed)
            self._tool_changed(editor.tool.name if editor.tool else "select")

    # ------------------------------------------------------------------------------------------ internals
    def _action(self, menu: QMenu | None, text: str, slot: Callable[[], None] | None) -> QAction:
        action = QAction(text, self.window)
        if slot is not None:
            action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        self.window.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _edit(
        self,
        menu: QMenu,
        text: str,
        shortcut: QKeySequence | QKeySequence.StandardKey | str,
        slot: Callable[[Editor], None],
        *,
        menu_item=True,
    ) -> QAction:
        action = self._action(menu if menu_item else None, text, lambda: self._on_editor(slot))
        action.setShortcut(QKeySequence(shortcut))
        self.instance_actions.append(action)
        return action

    def _on_editor(self, slot: Callable[[Editor], None]) -> None:
        if self.editor is not None:
            slot(self.editor)

    def _set_model_category(self, on: bool) -> None:
        box = self.editor.tools.get("box") if self.editor is not None else None
        if isinstance(box, BoxPromptTool) and box.prompter is not None:
            box.prompter.use_model_category = on

    def _tool_changed(self, name: str) -> None:
        action = self.tool_actions.get(name)
        if action is not None:
            action.setChecked(True)

    def _refine(self, editor: Editor) -> None:
        tool = editor.tools.get("refine")
        if isinstance(tool, RefineTool):
            tool.start()

    def _category_number(self, editor: Editor, n: int) -> None:
        """Key ``n``: the n-th category becomes current and is given to the selected instances."""
        categories = editor.document.categories()
        if n > len(categories):
            editor.message.emit(f"There is no category {n} (the project has {len(categories)})")
            return
        editor.set_current_category(categories[n - 1].id)
        if editor.selection():
            editor.set_category_of_selection(categories[n - 1].id)

    def _choose_category(self, editor: Editor) -> None:
        categories = editor.document.categories()
        if not editor.selection() or not categories:
            editor.message.emit("Select instances first; keys 1–9 pick a category")
            return
        names = [c.name for c in categories]
        name, ok = QInputDialog.getItem(self.window, "Change category", "Category:", names, 0, False)
        if ok:
            editor.set_category_of_selection(categories[names.index(name)].id)
