"""The project store: one SQLite file per project that holds every annotation, durable at each commit.

Layout: ``<project dir>/project.sqlite`` (``<project dir>`` is ``FOLDER/.maskrcnn-studio`` unless the
folder is read-only, see :mod:`app.project.locations`) and ``project.lock``, an OS lock held while it is open.

Durability, and why these settings:

- ``journal_mode=WAL``: readers never block the writer and a commit appends to one file, so a commit is
  a single sequential write plus fsync, cheap enough to do for every edit on the GUI thread.
- ``synchronous=FULL``: in WAL mode ``NORMAL`` is already safe against a process crash (``kill -9``):
  the WAL survives in the OS page cache. It is *not* safe against power loss or an OS crash, where the
  last commits can vanish. "Every committed edit is durable at once" is the promise, so every commit
  fsyncs the WAL (about a millisecond on an SSD; measured by ``bench/soak_kill.py``).
- ``foreign_keys=ON``: an instance cannot outlive its image or point at a missing category.
- Every public write is one ``BEGIN IMMEDIATE ... COMMIT`` transaction: an edit is either all there or
  not there at all.
- A schema version (``PRAGMA user_version``) plus a ``schema_migrations`` table; migrations run in a
  transaction at open, and a project written by a newer version is refused rather than damaged.

One :class:`ProjectStore` per project at a time: a second window or process is refused with
:class:`~app.project.lock.ProjectLockedError` (a ``ValueError``) naming the process that holds it.
The store is used from one thread (the GUI thread); workers hand their results to it through signals.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from app.project.locations import resolve_project_dir
from app.project.lock import ProjectLock
from app.project.records import (
    CategoryRecord,
    ImageRecord,
    ImageStatus,
    ImageUncertainty,
    ImportCounts,
    InstanceRecord,
    ModelVersionRecord,
    NewInstance,
    Provenance,
    TrainingRunRecord,
)
from app.project.truth import ANNOTATION_SQL, is_untouched_prediction
from maskrcnn_core.protocol import RunStatus

DB_NAME = "project.sqlite"
LOCK_NAME = "project.lock"

# (version, description, SQL). Append only: a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "images, categories, instances, model versions, training runs, settings",
        """
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
            base_model_version_id INTEGER REFERENCES model_versions(id),
            config_json TEXT NOT NULL DEFAULT '{}',
            metrics_json TEXT NOT NULL DEFAULT '{}',
            started_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            arch TEXT NOT NULL,
            path TEXT,
            sha256 TEXT,
            categories_json TEXT NOT NULL,
            training_run_id INTEGER REFERENCES training_runs(id),
            created_at TEXT NOT NULL
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL UNIQUE,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'predicted', 'corrected', 'verified')),
            error TEXT,
            revision INTEGER NOT NULL DEFAULT 0,
            predicted_by INTEGER REFERENCES model_versions(id),
            added_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE categories (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            color TEXT NOT NULL,
            supercategory TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE instances (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            category_id INTEGER NOT NULL REFERENCES categories(id),
            rle_counts TEXT NOT NULL,
            rle_height INTEGER NOT NULL,
            rle_width INTEGER NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            area INTEGER NOT NULL,
            provenance TEXT NOT NULL CHECK (provenance IN ('predicted', 'edited', 'verified', 'imported')),
            score REAL,
            model_version_id INTEGER REFERENCES model_versions(id),
            iscrowd INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX instances_by_image ON instances(image_id);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value_json TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        "the model's uncertainty per image and per predicted instance (the review queue)",
        """
        CREATE TABLE image_uncertainty (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            model_version_id INTEGER REFERENCES model_versions(id),
            score REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            features BLOB,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE instance_uncertainty (
            instance_id INTEGER PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
            uncertainty REAL NOT NULL
        );
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Another program (a database browser, a backup tool) holding the file's write lock: SQLite waits
# BUSY_TIMEOUT_MS for it, and the store tries that many times, saying so, before it reports the write failed.
BUSY_TIMEOUT_MS = 5000
BUSY_ATTEMPTS = 3
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

# Distinct, readable colours for new categories (Tableau 10), reused cyclically.
_CATEGORY_COLORS = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


class StoreError(ValueError):
    """The project file cannot be used: a newer schema, not a project, damaged, read-only, a full disk,
    or the project is closed. Store methods raise it for every SQLite failure, naming the file, so code
    above the project layer never sees ``sqlite3``."""


class StaleImageError(ValueError):
    """An operation named an image, instance or category that is not in the project, or a change no
    longer fits the project as it is now (the category it names was deleted, its name was taken)."""


class IdTakenError(StaleImageError):
    """An instance brought back under its old id (undoing a delete) found the id given to another one."""


class DamagedProjectError(StoreError):
    """Pages of the project file cannot be read (a disk error, an interrupted copy): what is readable can
    be copied into a new file by :func:`app.project.repair.repair_project`."""

    db_path: Path

    @classmethod
    def of(cls, db_path: Path, exc: sqlite3.Error) -> DamagedProjectError:
        error = cls(
            f"the project file {db_path} is damaged ({exc}); repair it (the app offers to when it opens "
            "the folder, or run `maskrcnn-studio repair FOLDER`): what can be read is kept in a new file "
            "and the damaged one stays beside it"
        )
        error.db_path = db_path
        return error


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock this step needs ("database is locked")."""
    return getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES or "locked" in str(exc)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ProjectStore:
    """The open project of one images folder. Close it (or use ``with``) to release the lock."""

    def __init__(self, db_path: Path, lock: ProjectLock) -> None:
        self.db_path = db_path
        self._lock = lock
        self._depth = 0  # nesting level of transaction()
        # Told "another program is using the project file ...; retrying…" while a write waits for the lock.
        self.on_busy: Callable[[str], None] | None = None
        # Told after each write: ``None`` once it is committed (durable), else why it was not.
        self.on_written: Callable[[str | None], None] | None = None
        self._db = sqlite3.connect(db_path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{db_path}: SQLite could not switch to WAL mode (got {mode!r})")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            lock.release()
            if "malformed" in str(exc):
                raise DamagedProjectError.of(db_path, exc) from None
            raise StoreError(f"{db_path} is not a readable project database: {exc}") from None
        except BaseException:
            self._db.close()
            lock.release()
            raise

    # ----------------------------------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, images_dir: str | Path, *, project_dir: str | Path | None = None) -> ProjectStore:
        """Open (or create) the project of ``images_dir``.

        Raises :class:`~app.project.locations.ProjectLocationError`
        when the project directory cannot be written
        (its ``suggested_dir`` says where the app could keep it instead),
        :class:`~app.project.lock.ProjectLockedError` when another window or process has it open, and
        :class:`StoreError` when the file is not a project this version can read.
        """
        images_dir = Path(images_dir).resolve()
        where = resolve_project_dir(images_dir, Path(project_dir) if project_dir is not None else None)
        lock = ProjectLock(where / LOCK_NAME)
        store = cls(where / DB_NAME, lock)
        try:
            if store.get_setting("images_dir") != str(images_dir):
                store.set_setting("images_dir", str(images_dir))
        except BaseException:  # e.g. a damaged page under the settings: the lock must not stay taken
            store.close()
            raise
        return store

    @property
    def images_dir(self) -> Path:
        """The folder whose images this project annotates (stored, so a project kept elsewhere finds it)."""
        return Path(self.get_setting("images_dir"))

    @property
    def is_open(self) -> bool:
        return self._lock.held

    def close(self) -> None:
        if not self._lock.held:
            return
        self._db.close()
        self._lock.release()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``'s verdict: ``"ok"`` for a sound file."""
        return "\n".join(row[0] for row in self._query("PRAGMA integrity_check"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write: everything inside commits together or not at all.

        Store methods called inside an open ``transaction()`` join it, so a caller can make several of
        them one unit (a COCO import is one transaction, whatever its size). An SQLite failure inside
        rolls it back and comes out as :class:`StoreError` or :class:`StaleImageError`.
        """
        if self._depth:
            self._depth += 1
            try:
                yield self._db
            finally:
                self._depth -= 1
            return
        try:
            with self._sqlite_errors():
                self._when_free(lambda: self._db.execute("BEGIN IMMEDIATE"))
        except StoreError as exc:
            self._written(str(exc))
            raise
        self._depth = 1
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                with suppress(sqlite3.Error):  # the failure being reported is the one that matters
                    self._db.execute("ROLLBACK")
            error = self._domain_error(exc) if isinstance(exc, sqlite3.Error) else exc
            if isinstance(error, StoreError | StaleImageError):
                self._written(str(error))
            if error is not exc:
                raise error from exc
            raise
        finally:
            self._depth = 0
        self._written(None)

    def _written(self, error: str | None) -> None:
        if self.on_written is not None:
            self.on_written(error)

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        """The rows of a read, with SQLite's failures as domain errors."""
        with self._sqlite_errors():
            return self._when_free(lambda: self._db.execute(sql, parameters).fetchall())

    def _when_free(self, step: Callable[[], Any]) -> Any:
        """``step``, tried again (up to ``BUSY_ATTEMPTS`` times) while another program holds the file."""
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == BUSY_ATTEMPTS:
                    raise
                if self.on_busy is not None:
                    self.on_busy(f"another program is using the project file: {self.db_path}; retrying…")
        raise AssertionError("unreachable: the last attempt returns or raises")

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        if not self._lock.held:
            raise StoreError(f"the project {self.db_path} is closed")
        try:
            yield
        except sqlite3.Error as exc:
            raise self._domain_error(exc) from exc

    def _domain_error(self, exc: sqlite3.Error) -> StoreError | StaleImageError:
        """What an SQLite failure means to the caller (a constraint is the caller's stale view)."""
        if isinstance(exc, sqlite3.IntegrityError):
            return StaleImageError(f"the change does not fit the project as it is now ({exc})")
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            return StoreError(
                f"another program is using the project file {self.db_path} and did not let go in "
                f"{BUSY_ATTEMPTS * BUSY_TIMEOUT_MS // 1000} s; the change was not saved (close that program "
                "and try again)"
            )
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return DamagedProjectError.of(self.db_path, exc)
        return StoreError(f"the project file {self.db_path} cannot be used: {exc}")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path} was written by a newer Mask R-CNN Studio (schema {version}, this version "
                f"reads up to {SCHEMA_VERSION}); update the app to open it"
            )
        if version < SCHEMA_VERSION:  # a file written from the first schema's SQL alone may lack it
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        for number, description, sql in MIGRATIONS:
            if number <= version:
                continue
            with self.transaction() as db:
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (number, description, _now()),
                )
                db.execute(f"PRAGMA user_version = {number:d}")

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    # -------------------------------------------------------------------------------------------- settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key`` (active model, last viewed image, score threshold, ...)."""
        rows = self._query("SELECT value_json FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO settings (key, value_json) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json",
                (key, json.dumps(value)),
            )

    # ---------------------------------------------------------------------------------------------- images
    def add_images(self, file_names: Iterable[str]) -> int:
        """Add the files (paths relative to the images folder, ``/``-separated) not yet in the project.

        Returns how many were new. One transaction, so a 10,000-file folder is added in one fsync.
        """
        now = _now()
        rows = [(_check_relative(name), now, now) for name in file_names]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO images (file_name, added_at, updated_at) VALUES (?, ?, ?)", rows
            )
            return db.total_changes - before

    def images(self) -> list[ImageRecord]:
        """All images, ordered by file name."""
        return [_image(row) for row in self._query(f"SELECT {_IMAGE_COLUMNS} FROM images ORDER BY file_name")]

    def image(self, image_id: int) -> ImageRecord:
        rows = self._query(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise StaleImageError(f"no image with id {image_id} in this project")
        return _image(rows[0])

    def image_by_name(self, file_name: str) -> ImageRecord | None:
        rows = self._query(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE file_name = ?", (file_name,))
        return _image(rows[0]) if rows else None

    def set_image_info(
        self, image_id: int, *, size: tuple[int, int] | None = None, error: str | None = None
    ) -> None:
        """Record what reading the file found: its ``(H, W)`` size, or why it cannot be used."""
        with self.transaction() as db:
            if size is not None:
                db.execute(
                    "UPDATE images SET height = ?, width = ?, error = NULL, updated_at = ? WHERE id = ?",
                    (int(size[0]), int(size[1]), _now(), image_id),
                )
            else:
                db.execute(
                    "UPDATE images SET error = ?, updated_at = ? WHERE id = ?", (error, _now(), image_id)
                )

    def set_verified(self, image_id: int, verified: bool) -> ImageRecord:
        """Mark an image verified (or not); counts as an edit, so pending model results are dropped."""
        with self.transaction() as db:
            image = self._image_in(db, image_id)
            if verified:
                status = ImageStatus.VERIFIED
            else:
                status = (
                    ImageStatus.PREDICTED
                    if image.revision == 0 and self._has_prediction(db, image_id)
                    else ImageStatus.CORRECTED
                )
            db.execute(
                "UPDATE images SET status = ?, revision = revision + 1, updated_at = ? WHERE id = ?",
                (status.value, _now(), image_id),
            )
        return self.image(image_id)

    # ------------------------------------------------------------------------------------------ categories
    def categories(self) -> list[CategoryRecord]:
        rows = self._query("SELECT id, name, color, supercategory FROM categories ORDER BY id")
        return [CategoryRecord(*row) for row in rows]

    def ensure_categories(
        self, names: Sequence[str], supercategory: str = "", preferred_ids: Mapping[str, int] | None = None
    ) -> dict[str, int]:
        """The ids of the named categories, creating those that do not exist yet (one transaction).

        A new category takes its ``preferred_ids`` id when no category has that id yet, so the ids of an
        imported COCO file survive into the export.
        """
        ids: dict[str, int] = {}
        preferred_ids = preferred_ids or {}
        with self.transaction() as db:
            for name in names:
                if not isinstance(name, str) or not name.strip():
                    raise ValueError(f"a category name must be a non-empty string, got {name!r}")
                row = db.execute("SELECT id FROM categories WHERE name = ?", (name,)).fetchone()
                if row is None:
                    count = db.execute("SELECT COUNT(*) FROM categories").fetchone()[0]
                    color = _CATEGORY_COLORS[count % len(_CATEGORY_COLORS)]
                    wanted = preferred_ids.get(name)
                    if (
                        wanted is not None
                        and db.execute("SELECT 1 FROM categories WHERE id = ?", (wanted,)).fetchone()
                    ):
                        wanted = None
                    cur = db.execute(
                        "INSERT INTO categories (id, name, color, supercategory) VALUES (?, ?, ?, ?)",
                        (wanted, name, color, supercategory),
                    )
                    ids[name] = _inserted_id(cur)
                else:
                    ids[name] = int(row[0])
        return ids

    def update_category(self, category_id: int, *, name: str | None = None, color: str | None = None) -> None:
        """Rename and / or recolour a category (``color`` ``#rrggbb``); names stay unique."""
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"a category name must be a non-empty string, got {name!r}")
        if color is not None and not _is_hex_color(color):
            raise ValueError(f"a category colour must be '#rrggbb', got {color!r}")
        with self.transaction() as db:
            if name is not None:
                clash = db.execute(
                    "SELECT 1 FROM categories WHERE name = ? AND id != ?", (name, category_id)
                ).fetchone()
                if clash:
                    raise ValueError(f"there is already a category named {name!r}")
            cur = db.execute(
                "UPDATE categories SET name = COALESCE(?, name), color = COALESCE(?, color) WHERE id = ?",
                (name, color, category_id),
            )
            if cur.rowcount != 1:
                raise StaleImageError(f"no category with id {category_id} in this project")

    def delete_category(self, category_id: int, reassign_to: int | None) -> dict[int, list[int]]:
        """Delete a category, giving its instances to ``reassign_to`` first (one transaction).

        Returns ``{image id: [instance ids]}`` of the instances that moved (for undo); each of those
        images counts it as an edit (its revision goes up). A category that still has instances cannot
        be deleted without a category to reassign them to.
        """
        with self.transaction() as db:
            rows = db.execute(
                "SELECT image_id, id FROM instances WHERE category_id = ? ORDER BY id", (category_id,)
            ).fetchall()
            if rows and (reassign_to is None or reassign_to == category_id):
                raise ValueError(
                    f"category {category_id} has {len(rows)} instances: name another category for them"
                )
            moved: dict[int, list[int]] = {}
            for image_id, instance_id in rows:
                moved.setdefault(int(image_id), []).append(int(instance_id))
            if rows:
                db.execute(
                    "UPDATE instances SET category_id = ?, updated_at = ? WHERE category_id = ?",
                    (reassign_to, _now(), category_id),
                )
                self._bump_revisions(db, moved)
            cur = db.execute("DELETE FROM categories WHERE id = ?", (category_id,))
            if cur.rowcount != 1:
                raise StaleImageError(f"no category with id {category_id} in this project")
        return moved

    def restore_category(self, category: CategoryRecord, moved: Mapping[int, Sequence[int]]) -> None:
        """Undo :meth:`delete_category`: recreate ``category`` under its id and give back its instances."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO categories (id, name, color, supercategory) VALUES (?, ?, ?, ?)",
                (category.id, category.name, category.color, category.supercategory),
            )
            now = _now()
            for ids in moved.values():
                db.executemany(
                    "UPDATE instances SET category_id = ?, updated_at = ? WHERE id = ?",
                    [(category.id, now, i) for i in ids],
                )
            self._bump_revisions(db, moved)

    # ------------------------------------------------------------------------------------------- instances
    def instances(self, image_id: int | None = None) -> list[InstanceRecord]:
        """The instances of one image (or of all images), ordered by id."""
        if image_id is None:
            rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances ORDER BY id")
        else:
            rows = self._query(
                f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE image_id = ? ORDER BY id", (image_id,)
            )
        return [_instance(row) for row in rows]

    def read_every_row(self) -> None:
        """Read every row of the images and instances tables once, in SQLite (no Python records), so that a
        file with damaged pages raises :class:`DamagedProjectError` now rather than later."""
        self._query("SELECT count(*), sum(length(file_name)), sum(length(coalesce(error, ''))) FROM images")
        self._query("SELECT count(*), sum(length(rle_counts)), sum(category_id) FROM instances")

    def instance_counts(self) -> dict[int, int]:
        """``{category_id: number of instances}`` over the whole project."""
        rows = self._query("SELECT category_id, COUNT(*) FROM instances GROUP BY category_id")
        return {int(c): int(n) for c, n in rows}

    def annotation_counts(self, score_threshold: float) -> dict[int, int]:
        """``{category_id: number of annotations}`` over the whole project by the truth rule
        (:mod:`app.project.truth`) at ``score_threshold``: what the app shows, in one query."""
        sql = f"SELECT category_id, COUNT(*) FROM instances WHERE {ANNOTATION_SQL} GROUP BY category_id"
        rows = self._query(sql, (score_threshold,))
        return {int(c): int(n) for c, n in rows}

    def apply_edit(
        self,
        image_id: int,
        *,
        add: Sequence[NewInstance] = (),
        restore: Sequence[InstanceRecord] = (),
        update: Sequence[InstanceRecord] = (),
        delete: Sequence[int] = (),
    ) -> list[int]:
        """Commit a person's edit of one image in one transaction; returns the ids given to ``add``.

        ``restore`` re-inserts instances with their old ids (undoing a delete), ``update`` replaces the
        mask/box/category/provenance of existing instances, ``delete`` removes instances by id. The image's
        ``revision`` goes up and its status becomes ``corrected``, so a model result computed before this
        edit will never be applied over it.
        """
        now = _now()
        with self.transaction() as db:
            self._image_in(db, image_id)
            for instance_id in delete:
                cur = db.execute(
                    "DELETE FROM instances WHERE id = ? AND image_id = ?", (instance_id, image_id)
                )
                if cur.rowcount != 1:
                    raise StaleImageError(f"image {image_id} has no instance {instance_id} to delete")
            for record in update:
                cur = db.execute(
                    "UPDATE instances SET category_id = ?, rle_counts = ?, rle_height = ?, rle_width = ?, "
                    "x1 = ?, y1 = ?, x2 = ?, y2 = ?, area = ?, provenance = ?, score = ?, "
                    "model_version_id = ?, iscrowd = ?, updated_at = ? WHERE id = ? AND image_id = ?",
                    (*_instance_values(record)[1:], now, record.id, image_id),
                )
                if cur.rowcount != 1:
                    raise StaleImageError(f"image {image_id} has no instance {record.id} to update")
            for record in restore:
                if db.execute("SELECT 1 FROM instances WHERE id = ?", (record.id,)).fetchone():
                    raise IdTakenError(f"instance id {record.id} belongs to another instance now")
                db.execute(
                    f"INSERT INTO instances (id, image_id, {_VALUE_COLUMNS}, created_at, updated_at) "
                    f"VALUES (?, ?, {_VALUE_MARKS}, ?, ?)",
                    (record.id, image_id, *_instance_values(record)[1:], record.created_at, now),
                )
            new_ids = [self._insert(db, image_id, instance, now) for instance in add]
            db.execute(
                "UPDATE images SET revision = revision + 1, status = 'corrected', updated_at = ? "
                "WHERE id = ?",
                (now, image_id),
            )
        return new_ids

    def apply_prediction(
        self,
        image_id: int,
        *,
        expected_revision: int,
        instances: Sequence[NewInstance],
        model_version_id: int | None,
        image_size: tuple[int, int],
    ) -> bool:
        """Replace the image's untouched predictions with ``instances``, unless a person edited it since.

        ``expected_revision`` is the image's revision when the model run started; if it changed, nothing
        is written and ``False`` comes back (the person's edit wins). Edited, verified and imported
        instances are always kept. ``image_size`` is the ``(H, W)`` the model saw.
        """
        now = _now()
        with self.transaction() as db:
            image = self._image_in(db, image_id)
            if image.revision != expected_revision:
                return False
            self._delete_untouched_predictions(db, image_id)
            for instance in instances:
                if not is_untouched_prediction(instance):
                    raise ValueError(
                        f"a model result can only add predicted instances, got {instance.provenance}"
                    )
                self._insert(db, image_id, instance, now)
            status = ImageStatus.PREDICTED if image.status is ImageStatus.NEW else image.status
            db.execute(
                "UPDATE images SET status = ?, predicted_by = ?, height = ?, width = ?, error = NULL, "
                "updated_at = ? WHERE id = ?",
                (status.value, model_version_id, int(image_size[0]), int(image_size[1]), now, image_id),
            )
        return True

    def import_instances(self, image_id: int, instances: Sequence[NewInstance]) -> ImportCounts:
        """Make an annotation file's instances for one image it lists (a person's truth) the image's
        annotations, in one transaction.

        Every untouched prediction of the image is removed: the file's annotations are a person's full
        answer for the image, so a prediction left beside them would be a second copy of one of them or an
        object the person chose not to annotate, and the export and a fine-tune would count it. Instances
        a person edited, verified or imported earlier are never removed. An imported instance identical
        (same category, same mask) to one the image already holds, or to an earlier one of ``instances``,
        is counted as a duplicate and not written again, so re-importing a file changes nothing. When
        anything changed, the image becomes ``corrected`` (``verified`` stays) and its revision goes up,
        so a model result computed before the import is not applied over it.

        A **negative**: when ``instances`` holds no object instance (it is empty, or holds only crowd
        regions), the file states that nothing is there, so the image becomes ``verified`` with no
        objects. If it already holds a person's object instances, they are kept and the image is counted
        as a conflict instead (its status is left to the person's instances: it is not verified).
        """
        now = _now()
        with self.transaction() as db:
            image = self._image_in(db, image_id)
            replaced = self._delete_untouched_predictions(db, image_id)
            existing = {
                (int(c), str(counts))
                for c, counts in db.execute(
                    "SELECT category_id, rle_counts FROM instances WHERE image_id = ?", (image_id,)
                )
            }
            added = duplicates = crowd = 0
            for instance in instances:
                key = (instance.category_id, _counts_str(instance.rle))
                if key in existing:
                    duplicates += 1
                    continue
                existing.add(key)
                self._insert(db, image_id, instance, now)
                added += 1
                crowd += bool(instance.iscrowd)
            negative = not any(not i.iscrowd for i in instances)
            persons_objects = negative and any(not r.iscrowd for r in self.instances(image_id))
            if negative and not persons_objects:
                status = ImageStatus.VERIFIED
            elif image.status is ImageStatus.VERIFIED:
                status = ImageStatus.VERIFIED
            else:
                status = ImageStatus.CORRECTED
            if added or replaced or (negative and not persons_objects and status is not image.status):
                db.execute(
                    "UPDATE images SET status = ?, revision = revision + 1, updated_at = ? WHERE id = ?",
                    (status.value, now, image_id),
                )
                if instances:
                    height, width = instances[0].rle["size"]
                    db.execute(
                        "UPDATE images SET height = ?, width = ? WHERE id = ?",
                        (int(height), int(width), image_id),
                    )
        return ImportCounts(
            added=added,
            duplicates=duplicates,
            replaced=replaced,
            crowd=crowd,
            negatives=int(negative and not persons_objects),
            conflicts=int(persons_objects),
        )

    # -------------------------------------------------------------------------------------- model versions
    def add_model_version(
        self,
        *,
        name: str,
        arch: str,
        path: str | None,
        sha256: str | None,
        categories: Sequence[tuple[int, str]],
        training_run_id: int | None = None,
    ) -> int:
        """The id of this checkpoint in the project, registering it on first use (same path and hash)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM model_versions WHERE path IS ? AND sha256 IS ? AND name = ?",
                (path, sha256, name),
            ).fetchone()
            if row is not None:
                return int(row[0])
            cur = db.execute(
                "INSERT INTO model_versions (name, arch, path, sha256, categories_json, training_run_id, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    arch,
                    path,
                    sha256,
                    json.dumps([list(c) for c in categories]),
                    training_run_id,
                    _now(),
                ),
            )
            return _inserted_id(cur)

    def model_versions(self) -> list[ModelVersionRecord]:
        cur = self._query(
            "SELECT id, name, arch, path, sha256, categories_json, created_at, training_run_id "
            "FROM model_versions ORDER BY id"
        )
        return [
            ModelVersionRecord(
                id=row[0],
                name=row[1],
                arch=row[2],
                path=row[3],
                sha256=row[4],
                categories=tuple((int(i), str(n)) for i, n in json.loads(row[5])),
                created_at=row[6],
                training_run_id=row[7],
            )
            for row in cur
        ]

    # --------------------------------------------------------------------------------------- training runs
    def start_training_run(self, *, base_model_version_id: int | None, config: dict) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO training_runs (status, base_model_version_id, config_json, started_at) "
                "VALUES ('running', ?, ?, ?)",
                (base_model_version_id, json.dumps(config), _now()),
            )
            return _inserted_id(cur)

    def finish_training_run(self, run_id: int, *, status: RunStatus, metrics: dict) -> None:
        if status not in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise ValueError(f"a training run ends as finished, failed or cancelled, got {status!r}")
        with self.transaction() as db:
            db.execute(
                "UPDATE training_runs SET status = ?, metrics_json = ?, finished_at = ? WHERE id = ?",
                (RunStatus(status).value, json.dumps(metrics), _now(), run_id),
            )

    def resume_training_run(self, run_id: int) -> None:
        """Mark a cancelled or failed run as running again (it continues from its last checkpoint)."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE training_runs SET status = 'running', finished_at = NULL "
                "WHERE id = ? AND status IN ('cancelled', 'failed')",
                (run_id,),
            )
            if cur.rowcount != 1:
                raise ValueError(f"training run {run_id} is not a cancelled or failed run")

    def training_runs(self) -> list[TrainingRunRecord]:
        cur = self._query(
            "SELECT r.id, r.status, r.base_model_version_id, "
            "(SELECT MAX(m.id) FROM model_versions m WHERE m.training_run_id = r.id), "
            "r.config_json, r.metrics_json, r.started_at, r.finished_at FROM training_runs r ORDER BY r.id"
        )
        return [
            TrainingRunRecord(
                id=row[0],
                status=RunStatus(row[1]),
                base_model_version_id=row[2],
                output_model_version_id=row[3],
                config=json.loads(row[4]),
                metrics=json.loads(row[5]),
                started_at=row[6],
                finished_at=row[7],
            )
            for row in cur
        ]

    # ------------------------------------------------------------------------------------------- internals
    @staticmethod
    def _bump_revisions(db: sqlite3.Connection, image_ids: Iterable[int]) -> None:
        """Count a change of these images' instances as an edit (no model result made before it applies)."""
        db.executemany(
            "UPDATE images SET revision = revision + 1, updated_at = ? WHERE id = ?",
            [(_now(), int(i)) for i in image_ids],
        )

    def _image_in(self, db: sqlite3.Connection, image_id: int) -> ImageRecord:
        row = db.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise StaleImageError(f"no image with id {image_id} in this project")
        return _image(row)

    def _delete_untouched_predictions(self, db: sqlite3.Connection, image_id: int) -> int:
        """Remove the image's untouched predictions (the truth rule decides which); returns how many."""
        doomed = [r.id for r in self.instances(image_id) if is_untouched_prediction(r)]
        db.executemany("DELETE FROM instances WHERE id = ?", [(i,) for i in doomed])
        return len(doomed)

    @staticmethod
    def _has_prediction(db: sqlite3.Connection, image_id: int) -> bool:
        row = db.execute("SELECT predicted_by IS NOT NULL FROM images WHERE id = ?", (image_id,)).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _insert(db: sqlite3.Connection, image_id: int, instance: NewInstance, now: str) -> int:
        cur = db.execute(
            f"INSERT INTO instances (image_id, {_VALUE_COLUMNS}, created_at, updated_at) "
            f"VALUES (?, {_VALUE_MARKS}, ?, ?)",
            (image_id, *_instance_values(instance)[1:], now, now),
        )
        instance_id = _inserted_id(cur)
        uncertainty = getattr(instance, "uncertainty", None)  # a restored InstanceRecord has none
        if uncertainty is not None:
            db.execute(
                "INSERT INTO instance_uncertainty (instance_id, uncertainty) VALUES (?, ?)",
                (instance_id, float(uncertainty)),
            )
        return instance_id

    # ------------------------------------------------------------------ the model's uncertainty

    def set_image_uncertainty(
        self, image_id: int, uncertainty: ImageUncertainty | None, *, model_version_id: int | None
    ) -> None:
        """Keep what the model that just segmented the image made of it (``None``: nothing, and the score of
        an earlier model goes, since its predictions went)."""
        with self.transaction() as db:
            if uncertainty is None:
                db.execute("DELETE FROM image_uncertainty WHERE image_id = ?", (image_id,))
                return
            features = None
            if uncertainty.features is not None:
                features = np.asarray(uncertainty.features, dtype="<f4").tobytes()
            db.execute(
                "INSERT OR REPLACE INTO image_uncertainty "
                "(image_id, model_version_id, score, reason, features, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (image_id, model_version_id, float(uncertainty.score), uncertainty.reason, features, _now()),
            )

    def image_uncertainties(self) -> dict[int, ImageUncertainty]:
        """``{image_id: its model's uncertainty}`` for every image a scoring model segmented."""
        rows = self._query("SELECT image_id, score, reason, features FROM image_uncertainty")
        return {
            int(image_id): ImageUncertainty(
                float(score), str(reason), None if blob is None else np.frombuffer(blob, dtype="<f4").copy()
            )
            for image_id, score, reason, blob in rows
        }

    def instance_uncertainties(self, image_id: int) -> dict[int, float]:
        """``{instance_id: uncertainty}`` of the image's instances that a model scored."""
        rows = self._query(
            "SELECT u.instance_id, u.uncertainty FROM instance_uncertainty u "
            "JOIN instances i ON i.id = u.instance_id WHERE i.image_id = ?",
            (image_id,),
        )
        return {int(i): float(u) for i, u in rows}


_IMAGE_COLUMNS = "id, file_name, width, height, status, error, revision"
_VALUE_COLUMNS = (
    "category_id, rle_counts, rle_height, rle_width, x1, y1, x2, y2, area, provenance, score, "
    "model_version_id, iscrowd"
)
_VALUE_MARKS = ", ".join("?" * len(_VALUE_COLUMNS.split(",")))
_INSTANCE_COLUMNS = f"id, image_id, {_VALUE_COLUMNS}, created_at, updated_at"


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row the cursor's INSERT added (``lastrowid``, which sqlite3 types as optional)."""
    row_id = cursor.lastrowid
    assert row_id is not None, "an INSERT always sets lastrowid"
    return row_id


def _image(row: tuple) -> ImageRecord:
    return ImageRecord(
        id=row[0],
        file_name=row[1],
        width=row[2],
        height=row[3],
        status=ImageStatus(row[4]),
        error=row[5],
        revision=row[6],
    )


def _instance(row: tuple) -> InstanceRecord:
    return InstanceRecord(
        id=row[0],
        image_id=row[1],
        category_id=row[2],
        rle={"size": [row[4], row[5]], "counts": row[3]},
        box=(row[6], row[7], row[8], row[9]),
        area=row[10],
        provenance=Provenance(row[11]),
        score=row[12],
        model_version_id=row[13],
        iscrowd=bool(row[14]),
        created_at=row[15],
        updated_at=row[16],
    )


def _counts_str(rle: dict) -> str:
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def _instance_values(instance: NewInstance | InstanceRecord) -> tuple:
    """``(None, category_id, counts, H, W, x1, y1, x2, y2, area, provenance, score, model, iscrowd)``."""
    rle = instance.rle
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(
            f"an instance mask must be a COCO RLE dict with 'size' and 'counts', got {rle!r:.80}"
        )
    height, width = (int(v) for v in rle["size"])
    if len(instance.box) != 4:
        raise ValueError(f"an instance box must be (x1, y1, x2, y2), got {instance.box!r}")
    x1, y1, x2, y2 = (float(v) for v in instance.box)
    if not (x2 >= x1 and y2 >= y1):
        raise ValueError(f"an instance box must have x2 >= x1 and y2 >= y1, got {instance.box!r}")
    return (
        None,
        int(instance.category_id),
        _counts_str(rle),
        height,
        width,
        x1,
        y1,
        x2,
        y2,
        int(instance.area),
        Provenance(instance.provenance).value,
        None if instance.score is None else float(instance.score),
        instance.model_version_id,
        int(bool(instance.iscrowd)),
    )


def _is_hex_color(color: object) -> bool:
    return (
        isinstance(color, str)
        and len(color) == 7
        and color[0] == "#"
        and all(c in "0123456789abcdefABCDEF" for c in color[1:])
    )


def _check_relative(file_name: str) -> str:
    """Reject names that would step outside the images folder or that use the OS's separator."""
    path = PurePosixPath(file_name)
    if not file_name or path.is_absolute() or ".." in path.parts or "\\" in file_name:
        raise ValueError(
            f"an image name must be a relative path inside the folder using '/', got {file_name!r}"
        )
    return str(path)
