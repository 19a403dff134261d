"""The window at start and around the active model: the demo model's notice, reopening the open folder,
and the last folder reopened (or offered on the start page) when the app starts without one."""

from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QWidget

from app.project.model_sources import DEMO_MODEL
from app.project.recent import add_recent_folder, recent_folders, reopen_last_folder, set_reopen_last_folder
from app.session.model_description import DEMO_NOTICE
from app.ui.main_window import MainWindow
from app.ui.panels.start_page import StartPage

pytestmark = pytest.mark.gui


def _window(qtbot) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet")
def test_the_demo_model_is_named_with_its_classes_and_offers_get_models(qtbot, images_folder):
    window = _window(qtbot)
    assert window.open_folder(images_folder, weights=str(DEMO_MODEL))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=120_000)
    info = window.segmentation.model.info
    text = window.model_label.text()
    assert info.name in text and DEMO_NOTICE in text and f"{len(info.class_names)} classes" in text
    assert info.class_names[0] in text
    assert "trained on" in window.model_label.toolTip()
    assert window.model_about_menu.title() == f"Active model: {info.name} ({DEMO_NOTICE})"
    assert window.get_models_button.isVisible()
    get_models = getattr(window, "get_models_action", None)
    if get_models is None:  # Model ▸ Get models… not built into this window: the button says where to go
        window.get_models_button.click()
        assert "Get models… is not available" in window.statusBar().currentMessage()
    else:  # Model ▸ Get models… opens its dialog, closed here as soon as it shows
        QTimer.singleShot(
            0, lambda: QApplication.activeModalWidget() and QApplication.activeModalWidget().reject()
        )
        with qtbot.waitSignal(get_models.triggered, timeout=5000):
            window.get_models_button.click()
    window.close_project()
    assert window.model_label.text() == "Model: none" and not window.get_models_button.isVisible()


def test_a_stand_in_for_get_models_is_what_the_notice_triggers(qtbot):
    window = _window(qtbot)
    window.get_models_action = QAction("Get models…", window)
    triggered = []
    window.get_models_action.triggered.connect(lambda: triggered.append(True))
    window.get_models()
    assert triggered == [True]


def test_reopening_the_open_folder_keeps_it_open(qtbot, images_folder):
    window = _window(qtbot)
    assert window.open_folder(images_folder)
    document = window.document
    assert window.open_folder(images_folder)  # File ▸ Recent, or Open Folder on the same folder
    assert window.document is document and document.store.images()  # still open, still locked by us
    assert "already open" in window.statusBar().currentMessage()
    window.recent_menu.actions()[0].trigger()
    assert window.document is document


def test_the_last_folder_reopens_on_start(qtbot, images_folder):
    add_recent_folder(images_folder)
    assert reopen_last_folder()  # on by default
    window = _window(qtbot)
    assert window.reopen_last_action.isChecked()
    window.start_without_folder()
    assert window.document is not None and window.document.folder == images_folder.resolve()


def test_with_reopening_off_the_start_page_offers_the_last_folder(qtbot, images_folder):
    add_recent_folder(images_folder)
    window = _window(qtbot)
    window.reopen_last_action.setChecked(False)  # File ▸ Reopen the last folder on start
    assert not reopen_last_folder()
    window.start_without_folder()
    assert window.document is None
    page = window.browser_dock.widget()
    assert isinstance(page, StartPage) and images_folder.name in page.open_last_button.text()
    page.open_last_button.click()
    assert window.document is not None and window.document.folder == images_folder.resolve()


def test_a_last_folder_that_is_gone_is_dropped_with_one_line(qtbot, tmp_path, images_folder):
    gone = tmp_path / "gone"
    shutil.copytree(images_folder, gone)
    add_recent_folder(images_folder)
    add_recent_folder(gone)
    shutil.rmtree(gone)
    window = _window(qtbot)
    window.start_without_folder()
    assert "no longer exist" in window.statusBar().currentMessage()
    assert str(gone.resolve()) in window.statusBar().currentMessage()
    assert recent_folders() == [images_folder.resolve()]
    assert window.document is not None and window.document.folder == images_folder.resolve()


def test_an_old_recent_file_still_reads_and_keeps_the_setting(images_folder):
    from app.project.locations import user_data_dir

    user_data_dir().mkdir(parents=True, exist_ok=True)
    (user_data_dir() / "recent_folders.json").write_text(json.dumps([str(images_folder)]))
    assert recent_folders() == [images_folder] and reopen_last_folder()
    set_reopen_last_folder(False)
    add_recent_folder(images_folder)
    assert not reopen_last_folder() and recent_folders() == [images_folder.resolve()]


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet")
def test_a_status_message_keeps_room_beside_the_demo_models_label(qtbot, images_folder, tmp_path):
    """Seen in the window: with the demo model's long label, "Exported … to /" lost the export's path."""
    window = _window(qtbot)
    window.resize(1200, 800)  # the window's size at first start on a 1500-pixel-wide screen
    assert window.open_folder(images_folder, weights=str(DEMO_MODEL))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=120_000)
    status = window.statusBar()
    message = f"Exported 18 annotations on 4 images to {tmp_path.parent.name}/export.json"
    status.showMessage(message)
    qtbot.wait(50)  # the status bar lays out its widgets
    permanent = [w for w in status.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)]
    room = status.width() - sum(w.width() + status.layout().spacing() for w in permanent if w.isVisible())
    assert status.fontMetrics().horizontalAdvance(message) <= room
    assert DEMO_NOTICE in window.model_label.text()  # the label keeps its whole text: elided only on screen
    assert window.segmentation.model.info.name in window.model_label.toolTip()  # and in full there
