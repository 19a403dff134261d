"""The project file survives the world: damaged pages and another program holding SQLite's write lock.

Real files throughout: a project written by the store, then pages in the middle overwritten with garbage
(what a disk error or an interrupted copy leaves); a second real process holding ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fake_predictor import FakePredictor
from PIL import Image
from pycocotools.coco import COCO
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from app.project import store as store_module
from app.project.records import NewInstance, Provenance
from app.project.repair import repair_project
from app.project.store import DamagedProjectError, ProjectStore, StoreError
from app.session import commands
from app.session.document import ReadOnlyDocumentError
from app.session.project_opener import ProjectDamagedError
from app.ui import main_window as main_window_module
from app.ui import project_opener
from app.ui.main_window import MainWindow
from app.ui.project_opener import DamagedChoice, ask_what_to_do
from maskrcnn_core.masks import mask_to_rle
from maskrcnn_core.types import CroppedMask

REPO = Path(__file__).resolve().parents[2]
PAGE = 4096


def _instance(category_id: int, k: int) -> NewInstance:
    full = np.zeros((40, 40), dtype=bool)
    full[k % 30 : k % 30 + 8, 2:30] = True
    mask = CroppedMask.from_full(full)
    return NewInstance(
        category_id=category_id,
        rle=mask_to_rle(mask),
        box=(2.0, float(k % 30), 30.0, float(k % 30 + 8)),
        area=int(mask.area),
        provenance=Provenance.EDITED,
    )


def _damaged_project(folder: Path) -> tuple[Path, dict[int, tuple]]:
    """A real project of 300 images (150 with an instance), then three pages in its middle destroyed.

    Returns the file and the image rows as written (id -> row), read before the damage."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(300):
        Image.new("L", (40, 40)).save(folder / f"img{i:04d}.png")
    with ProjectStore.open(folder) as store:
        store.add_images(f"img{i:04d}.png" for i in range(300))
        category = store.ensure_categories(["cell"])["cell"]
        for k, image in enumerate(store.images()[:150]):
            store.set_image_info(image.id, size=(40, 40))
            store.apply_edit(image.id, add=[_instance(category, k)])
        db_path = store.db_path
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        written = {row[0]: row for row in db.execute("SELECT * FROM images")}
    pages = db_path.stat().st_size // PAGE
    with open(db_path, "r+b") as f:
        for page in (pages // 3, pages // 2, pages // 2 + 1):
            f.seek(page * PAGE)
            f.write(bytes(range(256)) * (PAGE // 256))
    with sqlite3.connect(db_path) as db:
        with pytest.raises(sqlite3.DatabaseError):
            db.execute("SELECT COUNT(*) FROM instances JOIN images ON images.id = image_id").fetchall()
    return db_path, written


def _still_readable_images(db_path: Path, ids) -> set[int]:
    """The image ids SQLite can still read one by one from the damaged file (independent of the repair)."""
    readable = set()
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        for image_id in ids:
            try:
                if db.execute("SELECT id FROM images WHERE rowid = ?", (image_id,)).fetchone():
                    readable.add(image_id)
            except sqlite3.DatabaseError:
                pass
    return readable


def _check_repaired(db_path: Path, written: dict[int, tuple], readable: set[int]) -> None:
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        repaired = {row[0]: row for row in db.execute("SELECT * FROM images")}
    assert set(repaired) == readable  # every readable row, nothing else
    assert all(repaired[i] == written[i] for i in repaired)  # unchanged
    assert 0 < len(repaired) <= len(written)
    assert list(db_path.parent.glob("project.damaged-*.sqlite")), "the damaged file is kept beside it"


def test_a_damaged_file_is_a_store_error_never_sqlite(tmp_path):
    db_path, _ = _damaged_project(tmp_path / "imgs")
    with pytest.raises(StoreError) as raised:  # at open, or at the first read of a damaged page
        with ProjectStore.open(tmp_path / "imgs") as store:
            store.images()
            store.instances()
    assert isinstance(raised.value, DamagedProjectError)
    assert "repair" in str(raised.value)


def test_repair_keeps_every_readable_row_and_the_damaged_file(tmp_path):
    db_path, written = _damaged_project(tmp_path / "imgs")
    readable = _still_readable_images(db_path, written)
    report = repair_project(tmp_path / "imgs")
    assert report.rows["images"] == len(readable)
    _check_repaired(db_path, written, readable)
    with ProjectStore.open(tmp_path / "imgs") as store:  # and it opens as a project again
        assert len(store.images()) == len(readable)
        assert store.integrity_check() == "ok"


def test_cli_repair_end_to_end(tmp_path):
    db_path, written = _damaged_project(tmp_path / "imgs")
    readable = _still_readable_images(db_path, written)
    done = subprocess.run(
        [sys.executable, "-m", "app", "repair", str(tmp_path / "imgs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(readable)} images" in done.stdout
    _check_repaired(db_path, written, readable)
    again = subprocess.run(
        [sys.executable, "-m", "app", "repair", str(tmp_path / "nothing-here")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and again.stderr.count("\n") == 1


@pytest.mark.gui
def test_the_window_offers_export_and_repair_and_opens_the_repaired_project(qtbot, tmp_path, monkeypatch):
    db_path, written = _damaged_project(tmp_path / "imgs")
    readable = _still_readable_images(db_path, written)
    out = tmp_path / "readable.json"
    said: list[str] = []
    answers = iter([DamagedChoice.EXPORT, DamagedChoice.REPAIR])
    monkeypatch.setattr(project_opener, "ask_what_to_do", lambda *_a: next(answers))
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _title, text, *a: said.append(text))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "COCO JSON (*.json)"))
    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    window.show()
    assert window.open_folder(tmp_path / "imgs")
    assert "what could be read" in said[0] and "repaired" in said[1]
    assert window.isVisible() and window.document is not None
    names = {image.id: image.file_name for image in window.document.images()}
    assert all(names[i] == written[i][1] for i in readable)  # the readable images, under their ids
    assert len(names) == len(written)  # and the lost ones found again in the folder, as new images
    window.close_project()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert list(db_path.parent.glob("project.damaged-*.sqlite"))
    exported = json.loads(out.read_text())
    with sqlite3.connect(db_path) as db:
        assert len(exported["annotations"]) == db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] > 0


@pytest.mark.gui
@pytest.mark.parametrize("choice", list(DamagedChoice))
def test_the_damaged_project_question_has_four_labelled_buttons(qtbot, tmp_path, choice):
    parent = QWidget()
    qtbot.addWidget(parent)
    damaged = ProjectDamagedError("database disk image is malformed", tmp_path, tmp_path)
    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        seen.extend(button.text() for button in box.buttons())
        next(button for button in box.buttons() if button.text() == choice.value).click()

    QTimer.singleShot(0, answer)
    assert ask_what_to_do(parent, tmp_path, damaged) is choice
    assert sorted(seen) == sorted(["Repair", "Open read-only", "Export what can be read…", "Cancel"])


@pytest.mark.gui
def test_a_damaged_project_opens_read_only_exports_and_is_repaired_from_the_menu(
    qtbot, tmp_path, monkeypatch
):
    db_path, written = _damaged_project(tmp_path / "imgs")
    readable = _still_readable_images(db_path, written)
    damaged_bytes = db_path.read_bytes()
    monkeypatch.setattr(project_opener, "ask_what_to_do", lambda *_a: DamagedChoice.OPEN_READ_ONLY)
    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _title, text, *a: told.append(text))
    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    window.show()
    assert window.open_folder(tmp_path / "imgs")

    document, editor = window.document, window.editor
    assert window.isVisible() and document is not None and editor is not None and document.read_only
    assert "read-only" in window.windowTitle() and "Repair project" in window.windowTitle()
    assert window.read_only_label.isVisible() and "Repair project" in window.read_only_label.text()
    names = {image.id: image.file_name for image in document.images()}
    assert set(names) == readable and all(names[i] == written[i][1] for i in readable)
    qtbot.waitUntil(window.canvas.has_image, timeout=5000)  # an image is shown
    editing = [*window.edit_actions.tool_actions.values(), *window.edit_actions.instance_actions]
    for action in (window.import_action, window.segment_image_action, window.segment_all_action):
        assert not action.isEnabled()
    assert not window.finetune_action.isEnabled() and not any(a.isEnabled() for a in editing)
    assert window.export_action.isEnabled() and window.repair_action.isEnabled()

    # An edit that slips past the disabled actions is refused, and nothing is recorded or written.
    annotated = next(i for i in sorted(readable) if document.instances(i))
    before = document.instances(annotated)
    category = before[0].category_id
    with pytest.raises(ReadOnlyDocumentError):
        document.apply_edit(annotated, delete=[before[0].id])
    with pytest.raises(ReadOnlyDocumentError):
        document.ensure_categories(["new"])
    said: list[str] = []
    editor.message.connect(said.append)
    command = commands.add_instance(
        editor.context, annotated, CroppedMask.from_full(np.ones((40, 40), bool)), category, "Add"
    )
    assert not editor.push(command) and window.undo_stack.count() == 0
    assert said and "read-only" in said[0]
    assert document.instances(annotated) == before

    # File ▸ Export writes what could be read, as a COCO file pycocotools loads.
    out = tmp_path / "readable.json"
    monkeypatch.setattr(
        main_window_module, "ask_export", lambda defaults, _parent: replace(defaults, path=out)
    )
    window.export_action.trigger()
    coco = COCO(str(out))
    exported = {i: len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()}
    shown = {i: len(document.visible_instances(i)) for i in readable}
    assert {i: n for i, n in exported.items() if n} == {i: n for i, n in shown.items() if n}
    assert sum(exported.values()) > 0
    assert db_path.read_bytes() == damaged_bytes  # the damaged file was never written

    window.repair_action.trigger()  # File ▸ Repair project…: the project reopens, writable
    assert told and "repaired" in told[-1]
    document = window.document
    assert document is not None and not document.read_only and "read-only" not in window.windowTitle()
    assert not window.read_only_label.isVisible() and window.save_indicator.isVisible()
    names = {image.id: image.file_name for image in document.images()}
    assert all(names[i] == written[i][1] for i in readable)
    assert window.import_action.isEnabled() and not window.repair_action.isEnabled()
    assert all(a.isEnabled() for a in editing)
    assert list(db_path.parent.glob("project.damaged-*.sqlite"))
    window.close_project()


_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def _hold_write_lock(db_path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db_path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.gui
@pytest.mark.parametrize("held_s, committed", [(1.0, True), (6.0, False)])
def test_an_edit_during_another_programs_lock_is_committed_after_or_reported(
    qtbot, images_folder, tmp_path, monkeypatch, held_s, committed
):
    # Short waits so the test is quick: 3 attempts of 0.6 s outlast a 1 s lock, not a 6 s one.
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 600)
    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    window.show()
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"not really a checkpoint: the fake predictor ignores it")
    assert window.open_folder(images_folder, weights=str(weights))
    qtbot.waitUntil(window.canvas.has_image, timeout=5000)
    document, editor = window.document, window.editor
    assert document is not None and editor is not None
    busy: list[str] = []
    document.storeBusy.connect(busy.append)
    told: list[str] = []
    editor.message.connect(told.append)
    image_id = document.current_image_id
    category = document.ensure_categories(["locked-out"])["locked-out"]
    before = len(document.store.instances(image_id))
    full = np.zeros((document.image(image_id).height or 32, document.image(image_id).width or 32), bool)
    full[2:9, 2:9] = True

    holder = _hold_write_lock(document.store.db_path, held_s)
    command = commands.add_instance(editor.context, image_id, CroppedMask.from_full(full), category, "Lock")
    window.undo_stack.push(command)  # the edit, made while the other program holds the file
    holder.wait(timeout=30)

    assert busy and str(document.store.db_path) in busy[0] and "retrying" in busy[0]
    assert window.isVisible()
    after = len(document.store.instances(image_id))
    if committed:
        assert after == before + 1
        assert window.undo_stack.count() == 1
    else:
        assert after == before  # not saved, and said so; the window and its history are fine
        assert any("another program is using the project file" in text for text in told)
        assert window.undo_stack.count() == 0
    assert document.store.integrity_check() == "ok"
    window.close_project()


@pytest.mark.gui
def test_model_results_that_cannot_be_saved_are_reported_and_the_run_goes_on(
    qtbot, images_folder, tmp_path, monkeypatch
):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 300)  # 3 attempts: about 1 s per result
    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    window.show()
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"not really a checkpoint: the fake predictor ignores it")
    assert window.open_folder(images_folder, weights=str(weights))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=5000)
    document = window.document
    holder = _hold_write_lock(document.store.db_path, 60)
    said: list[str] = []

    def on_message(text: str) -> None:
        said.append(text)
        if "was not saved" in text:
            holder.kill()  # the other program goes away after the first result it blocked

    window.segmentation.message.connect(on_message)
    with qtbot.waitSignal(window.segmentation.jobFinished, timeout=60_000):
        window.segment_all_action.trigger()
    holder.wait(timeout=30)

    not_saved = [text for text in said if "was not saved" in text]
    assert not_saved and "another program is using the project file" in not_saved[0]
    assert window.isVisible()
    with sqlite3.connect(document.store.db_path) as db:
        predicted = db.execute("SELECT COUNT(*) FROM images WHERE predicted_by IS NOT NULL").fetchone()[0]
    assert predicted > 0  # the run went on once the other program let go
    assert predicted + len(not_saved) == len(document.images())  # each result saved, or said not to be
    assert document.store.integrity_check() == "ok"
    window.close_project()
