"""Opening a folder's project as a document (app/session/project_opener.py), on real SQLite projects."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.project.locations import PROJECT_DIR_NAME, remember_project_dir
from app.project.store import DB_NAME
from app.session.project_opener import ProjectInUseError, ProjectOpenError, open_document


class Chooser:
    """Stands in for the window's "choose a project directory" dialog and records what it was asked."""

    def __init__(self, answer: Path | None) -> None:
        self.answer = answer
        self.asked: list[tuple[Path, str, Path | None]] = []

    def __call__(self, folder: Path, reason: str, suggested: Path | None) -> Path | None:
        self.asked.append((folder, reason, suggested))
        return self.answer


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    return folder


def _unwritable_remembered_dir(folder: Path, tmp_path: Path) -> None:
    """Make the folder's project place unusable as a read-only folder would (root ignores chmod): the
    remembered project directory lies under a plain file, so it cannot be created."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    remember_project_dir(folder, blocker / "project")


def test_a_new_folder_opens_as_a_document_and_close_releases_it(qapp, folder):
    chooser = Chooser(None)
    document = open_document(folder, chooser)
    assert document is not None
    assert document.folder == folder
    assert (folder / PROJECT_DIR_NAME / DB_NAME).is_file()
    assert document.scan() == 1
    document.close()
    again = open_document(folder, chooser)  # the lock was released
    assert again is not None and [im.file_name for im in again.images()] == []
    again.scan()
    assert [im.file_name for im in again.images()] == ["a.png"]
    again.close()
    assert chooser.asked == []


def test_a_project_open_elsewhere_is_refused(qapp, folder):
    first = open_document(folder, Chooser(None))
    assert first is not None
    with pytest.raises(ProjectInUseError, match="already open"):
        open_document(folder, Chooser(None))
    first.close()
    second = open_document(folder, Chooser(None))
    assert second is not None
    second.close()


def test_an_unusable_place_asks_for_another_and_remembers_it(qapp, folder, tmp_path):
    _unwritable_remembered_dir(folder, tmp_path)
    chosen = tmp_path / "chosen"
    chooser = Chooser(chosen)
    document = open_document(folder, chooser)
    assert document is not None
    assert [(f, s is not None) for f, _reason, s in chooser.asked] == [(folder, True)]
    assert "cannot keep the project" in chooser.asked[0][1]
    assert document.store.db_path.parent == chosen
    document.close()
    asked_again = Chooser(None)
    reopened = open_document(folder, asked_again)  # found where the user put it, without asking
    assert reopened is not None and reopened.store.db_path.parent == chosen
    reopened.close()
    assert asked_again.asked == []


def test_declining_to_choose_a_place_opens_nothing(qapp, folder, tmp_path):
    _unwritable_remembered_dir(folder, tmp_path)
    assert open_document(folder, Chooser(None)) is None
    assert not (folder / PROJECT_DIR_NAME).exists()


def test_a_missing_folder_is_an_error_without_asking(qapp, tmp_path):
    chooser = Chooser(tmp_path / "chosen")
    with pytest.raises(ProjectOpenError, match="not a folder"):
        open_document(tmp_path / "missing", chooser)
    assert chooser.asked == []


def test_a_damaged_project_file_is_a_one_line_error_and_stays_unlocked(qapp, folder):
    project = folder / PROJECT_DIR_NAME
    project.mkdir()
    (project / DB_NAME).write_bytes(b"this is not a database" * 100)
    for _ in range(2):  # the second try fails the same way: the first left no lock behind
        with pytest.raises(ProjectOpenError, match="not a readable project database") as info:
            open_document(folder, Chooser(None))
        assert "\n" not in str(info.value)
        assert not isinstance(info.value, ProjectInUseError)
