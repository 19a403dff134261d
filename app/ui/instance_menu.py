"""The canvas's right-click menu on an instance: category, delete, accept, merge, split, refine, hide.

It holds no edit of its own: the items are the Edit menu's actions (:class:`~app.ui.actions.EditActions`,
which call the editor's undoable edits), so a right click and a shortcut do the same thing. A right click
on an instance outside the selection selects it first; on a selected one the selection stays, so that
merge works on every selected instance.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint
from PySide6.QtGui import QAction, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QMenu, QWidget

from app.session.editor import Editor
from app.ui.actions import EditActions


def build_instance_menu(
    editor: Editor, actions: EditActions, instance_id: int, parent: QWidget | None = None
) -> QMenu:
    """The menu for a right click on ``instance_id`` (selected first when it is not already)."""
    if instance_id not in editor.selection():
        editor.select_one(instance_id)
    menu = QMenu(parent)
    categories = menu.addMenu("&Category")
    current = {r.category_id for r in editor.selected_records()}
    for category in editor.document.categories():
        swatch = QPixmap(12, 12)
        swatch.fill(QColor(category.color))
        item = QAction(QIcon(swatch), category.name, menu)
        item.setCheckable(True)
        item.setChecked(current == {category.id})
        item.triggered.connect(lambda _c=False, cid=category.id: editor.set_category_of_selection(cid))
        categories.addAction(item)
    categories.setEnabled(not categories.isEmpty())
    menu.addAction(actions.accept_action)
    menu.addAction(actions.delete_action)
    menu.addSeparator()
    menu.addAction(actions.merge_action)
    menu.addAction(actions.split_action)
    menu.addAction(actions.refine_action)
    menu.addSeparator()
    menu.addAction(actions.hide_action)
    return menu


def show_instance_menu(
    editor: Editor, actions: EditActions, instance_id: int, at: QPoint, parent: QWidget | None = None
) -> None:
    """Open the instance's menu at the global position ``at`` (and forget it once closed)."""
    menu = build_instance_menu(editor, actions, instance_id, parent)
    menu.aboutToHide.connect(menu.deleteLater)
    menu.popup(at)
