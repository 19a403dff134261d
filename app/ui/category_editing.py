"""Category editing: add, rename, recolour, delete (reassigning its instances), add the model's classes.

Each is an undo command (:mod:`app.session.commands`) on the window's stack. The ``ask_*``
slots show the small dialogs; the plain methods do the work and are what tests and scripts call.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QInputDialog, QWidget

from app.session.commands import AddCategory, DeleteCategory, EditCategory
from app.session.editor import Editor
from app.session.segmentation import SegmentationController
from app.ui.panels.category_panel import CategoryDock


class CategoryEditing(QObject):
    def __init__(
        self,
        editor: Editor,
        dock: CategoryDock,
        segmentation: SegmentationController | None,
        dialog_parent: QWidget,
    ) -> None:
        super().__init__(editor)
        self.editor = editor
        self.dock = dock
        self.segmentation = segmentation
        self._parent = dialog_parent
        # Bound methods of this QObject: Qt drops the connections when the project closes.
        dock.addRequested.connect(self.ask_add)
        dock.renameRequested.connect(self.ask_rename)
        dock.recolourRequested.connect(self.ask_recolour)
        dock.deleteRequested.connect(self.ask_delete)
        dock.fromModelRequested.connect(self.add_model_classes)
        dock.panel.categorySelected.connect(editor.set_current_category)
        editor.currentCategoryChanged.connect(dock.panel.set_current)
        dock.panel.set_current(editor.current_category)
        dock.set_enabled(True)

    @property
    def document(self):  # noqa: ANN201 - Document
        return self.editor.document

    # ------------------------------------------------------------------------------------------- actions
    def add(self, name: str) -> int | None:
        name = name.strip()
        if not name:
            return None
        if any(c.name == name for c in self.document.categories()):
            self.editor.message.emit(f"There is already a category named {name!r}")
            return None
        command = AddCategory(self.editor.context, name)
        self.editor.undo_stack.push(command)
        category_id = command.category_id  # None: the store refused it and the message says why
        if category_id is not None:
            self.editor.set_current_category(category_id)
        return category_id

    def rename(self, category_id: int, name: str) -> bool:
        name = name.strip()
        if not name or name == self.document.category(category_id).name:
            return False
        if any(c.name == name for c in self.document.categories()):
            self.editor.message.emit(f"There is already a category named {name!r}")
            return False
        self.editor.undo_stack.push(EditCategory(self.editor.context, category_id, name=name))
        return True

    def recolour(self, category_id: int, color: str) -> None:
        if QColor(color).name() != self.document.category(category_id).color:
            self.editor.undo_stack.push(
                EditCategory(self.editor.context, category_id, color=QColor(color).name())
            )

    def delete(self, category_id: int, reassign_to: int | None) -> bool:
        """Delete a category; its instances go to ``reassign_to`` (needed when it has any)."""
        count = self.document.instance_counts().get(category_id, 0)
        if count and (reassign_to is None or reassign_to == category_id):
            self.editor.message.emit(f"Choose a category for its {count} instances first")
            return False
        self.editor.undo_stack.push(DeleteCategory(self.editor.context, category_id, reassign_to))
        return True

    def add_model_classes(self) -> list[int]:
        """Start from the model's classes: one category per class the project does not have yet."""
        model = self.segmentation.model if self.segmentation is not None else None
        if model is None:
            self.editor.message.emit("No model is loaded")
            return []
        existing = {c.name for c in self.document.categories()}
        new = [name for name in model.info.class_map.names_in_use if name not in existing]
        if not new:
            self.editor.message.emit("The project already has every class of the model")
            return []
        stack = self.editor.undo_stack
        stack.beginMacro(f"Add {len(new)} categories from the model")
        commands = [AddCategory(self.editor.context, name) for name in new]
        for command in commands:
            stack.push(command)
        stack.endMacro()
        return [c.category_id for c in commands if c.category_id is not None]

    # ------------------------------------------------------------------------------------------- dialogs
    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self._parent, "Add category", "Name:")
        if ok:
            self.add(name)

    def ask_rename(self, category_id: int) -> None:
        old = self.document.category(category_id).name
        name, ok = QInputDialog.getText(self._parent, "Rename category", "Name:", text=old)
        if ok:
            self.rename(category_id, name)

    def ask_recolour(self, category_id: int) -> None:
        color = QColorDialog.getColor(QColor(self.document.category(category_id).color), self._parent)
        if color.isValid():
            self.recolour(category_id, color.name())

    def ask_delete(self, category_id: int) -> None:
        category = self.document.category(category_id)
        count = self.document.instance_counts().get(category_id, 0)
        others = [c for c in self.document.categories() if c.id != category_id]
        if not count:
            self.delete(category_id, None)
            return
        if not others:
            self.editor.message.emit(
                f"Add another category for the {count} instances of {category.name} first"
            )
            return
        names = [c.name for c in others]
        name, ok = QInputDialog.getItem(
            self._parent,
            "Delete category",
            f"{category.name} has {count} instances. Give them to:",
            names,
            0,
            False,
        )
        if ok:
            self.delete(category_id, others[names.index(name)].id)
