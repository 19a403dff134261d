"""Opening a folder's project as a document: its store, its lock, and a place for it when the folder is
read-only.

The window only shows what happens here: it passes a way to ask the user for a project directory, and
turns the two errors below into message boxes. A refusal never leaves the project locked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject

from app.project.locations import ProjectLocationError, remember_project_dir
from app.project.lock import ProjectLockedError
from app.project.repair import open_readable_copy, repair_project
from app.project.store import DB_NAME, DamagedProjectError, ProjectStore, StoreError
from app.session.document import Document

# Asked when the folder cannot hold its project: (folder, why, a suggested directory) -> the directory the
# user chose, or None when they declined.
ChooseProjectDir = Callable[[Path, str, Path | None], Path | None]


class ProjectOpenError(Exception):
    """The folder's project cannot be opened; the message says why, in one line."""


class ProjectInUseError(ProjectOpenError):
    """Another window or process has the project open (it holds the project's lock)."""


class ProjectDamagedError(ProjectOpenError):
    """The project file has unreadable pages; :func:`repair_damaged_project` copies what is readable."""

    def __init__(self, message: str, folder: Path, project_dir: Path) -> None:
        super().__init__(message)
        self.folder = folder
        self.project_dir = project_dir


def repair_damaged_project(folder: Path, project_dir: Path) -> str:
    """Rebuild ``folder``'s damaged project file in ``project_dir`` from what is readable (the damaged one
    is kept beside it); returns what was kept, in one line. Raises ``ValueError`` (lock held, file
    unreadable) with the reason."""
    return repair_project(folder, project_dir=project_dir).headline()


def open_read_only(error: ProjectDamagedError, parent: QObject | None = None) -> Document:
    """A read-only document of what the damaged project file still holds: a repaired copy in a temporary
    folder that lives as long as the document (removed when it is closed). The damaged file is not
    touched. Raises ``ValueError`` (:class:`StoreError`) when the file cannot be read at all."""
    scratch = tempfile.TemporaryDirectory(prefix="maskrcnn-studio-readable-")
    try:
        store = open_readable_copy(error.project_dir / DB_NAME, Path(scratch.name), error.folder)
    except BaseException:
        scratch.cleanup()
        raise
    return Document(store, parent, damaged_project_dir=error.project_dir, on_close=scratch.cleanup)


def export_readable(error: ProjectDamagedError, out: Path) -> str:
    """Write what the damaged project file still holds as a COCO file ``out`` (the file is not changed:
    the read-only document of its repaired copy is exported); returns what was written."""
    document = open_read_only(error)
    try:
        written = document.export_coco(out)
    finally:
        document.close()
    return f"wrote {written.annotations} annotations on {written.images} images (what could be read) to {out}"


def open_document(
    folder: Path, choose_project_dir: ChooseProjectDir, parent: QObject | None = None
) -> Document | None:
    """The document of ``folder``'s project (created on first open), or ``None`` when the folder is
    read-only and the user chose no other place for the project.

    A directory the user chooses is remembered, so the folder opens without asking next time. Raises
    :class:`ProjectInUseError`, :class:`ProjectDamagedError` or :class:`ProjectOpenError`.
    """
    try:
        try:
            store = ProjectStore.open(folder)
        except ProjectLocationError as exc:
            if not folder.is_dir():
                raise
            chosen = choose_project_dir(folder, str(exc), exc.suggested_dir)
            if chosen is None:
                return None
            store = ProjectStore.open(folder, project_dir=chosen)
            remember_project_dir(folder, chosen)
    except ProjectLockedError as exc:
        raise ProjectInUseError(str(exc)) from exc
    except DamagedProjectError as exc:
        raise ProjectDamagedError(str(exc), folder, exc.db_path.parent) from exc
    except (ProjectLocationError, StoreError) as exc:
        raise ProjectOpenError(str(exc)) from exc
    try:
        # A file with damaged pages is found here, where the user is offered a repair, rather than half-way
        # through building the window.
        store.read_every_row()
        return Document(store, parent)
    except DamagedProjectError as exc:
        store.close()
        raise ProjectDamagedError(str(exc), folder, exc.db_path.parent) from exc
    except StoreError as exc:
        store.close()
        raise ProjectOpenError(str(exc)) from exc
    except BaseException:
        store.close()
        raise
