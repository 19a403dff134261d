"""Repairing a damaged project file: copy what SQLite can still read into a new file, keep the old one.

A disk error or an interrupted copy leaves pages of ``project.sqlite`` unreadable ("database disk image
is malformed"). Python's ``sqlite3`` module has no ``.recover`` (that is the sqlite3 shell's), so the
repair reads each table of the project schema itself: in one scan while the pages read, and row by row
(by rowid) past the pages that do not, so a damaged page loses only the rows on it. The new file is
built by the store's own migrations; rows whose image or category was lost lose the reference they
cannot keep (an instance without its image or category is dropped; a missing model version or training
run becomes "none"), so the repaired file passes ``PRAGMA integrity_check`` and ``foreign_key_check``.
The damaged file stays beside the new one as ``project.damaged-<UTC time>.sqlite``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.project.locations import resolve_project_dir
from app.project.lock import ProjectLock
from app.project.store import DB_NAME, LOCK_NAME, ProjectStore, StoreError

# The project tables in the order a reader thinks of them; schema_migrations is written by the migrations.
_TABLES = ("settings", "categories", "images", "model_versions", "training_runs", "instances")

# How far past the last readable row the row-by-row read looks when the table's largest rowid is unreadable.
_PROBE_SPAN = 100_000

# A reference to a row the repair could not read: (table, column, referenced table); the column is set to
# NULL (the optional references) or the row is dropped (the ones an instance cannot live without).
_NULLABLE_REFERENCES = (
    ("instances", "model_version_id", "model_versions"),
    ("images", "predicted_by", "model_versions"),
    ("model_versions", "training_run_id", "training_runs"),
    ("training_runs", "base_model_version_id", "model_versions"),
)
_REQUIRED_REFERENCES = (
    ("instances", "image_id", "images"),
    ("instances", "category_id", "categories"),
)


@dataclass
class RepairReport:
    """What a repair kept: rows copied per table, rows dropped for a lost reference, where the files are."""

    repaired: Path
    damaged_copy: Path
    rows: dict[str, int] = field(default_factory=dict)
    unreadable_tables: list[str] = field(default_factory=list)
    dropped_instances: int = 0

    def headline(self) -> str:
        kept = ", ".join(f"{count} {table}" for table, count in self.rows.items())
        lost = f"; unreadable: {', '.join(self.unreadable_tables)}" if self.unreadable_tables else ""
        dropped = (
            f"; {self.dropped_instances} instances dropped (their image or category was lost)"
            if self.dropped_instances
            else ""
        )
        return (
            f"repaired {self.repaired}: kept {kept}{lost}{dropped}; the damaged file is {self.damaged_copy}"
        )


def repair_project(images_dir: str | Path, *, project_dir: str | Path | None = None) -> RepairReport:
    """Rebuild ``images_dir``'s project file from what is readable and put it in place of the damaged one.

    Holds the project's lock while it works (a window with the project open makes it refuse with
    :class:`~app.project.lock.ProjectLockedError`). Raises :class:`StoreError` when the file is not there
    or not an SQLite file at all.
    """
    images_dir = Path(images_dir).resolve()
    where = resolve_project_dir(images_dir, Path(project_dir) if project_dir is not None else None)
    db_path = where / DB_NAME
    if not db_path.is_file():
        raise StoreError(f"{images_dir} has no project file to repair ({db_path} does not exist)")
    lock = ProjectLock(where / LOCK_NAME)
    try:
        return _repair(db_path)
    finally:
        lock.release()


def open_readable_copy(db_path: Path, into: Path, images_dir: Path) -> ProjectStore:
    """A project store on a repaired copy of the damaged ``db_path`` of the images in ``images_dir``, made
    in the folder ``into``; the damaged file itself is not touched. For reading (an export of what can be
    read) before a repair. The copy names ``images_dir`` whether or not the damage spared that setting."""
    copy = into / DB_NAME
    for suffix in ("", "-wal"):
        if Path(f"{db_path}{suffix}").exists():
            shutil.copyfile(f"{db_path}{suffix}", f"{copy}{suffix}")
    _repair(copy)
    store = ProjectStore(copy, ProjectLock(into / LOCK_NAME))
    store.set_setting("images_dir", str(Path(images_dir).resolve()))
    return store


def _repair(db_path: Path) -> RepairReport:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rebuilt = db_path.with_name(f"project.repairing-{stamp}.sqlite")
    damaged_copy = db_path.with_name(f"project.damaged-{stamp}.sqlite")
    report = RepairReport(repaired=db_path, damaged_copy=damaged_copy)
    try:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{db_path} cannot be read at all: {exc}") from None
    try:
        _copy_readable(source, rebuilt, report)
    except BaseException:
        _remove_with_sidecars(rebuilt)
        raise
    finally:
        source.close()
    for suffix in ("", "-wal", "-shm"):
        damaged = Path(f"{db_path}{suffix}")
        if damaged.exists():
            os.replace(damaged, Path(f"{damaged_copy}{suffix}"))
    os.replace(rebuilt, db_path)
    return report


def _copy_readable(source: sqlite3.Connection, rebuilt: Path, report: RepairReport) -> None:
    # The new file gets the current schema from the store's own migrations (the one owner of the schema);
    # the lock beside it is private to this repair.
    lock = ProjectLock(rebuilt.with_suffix(".lock"))
    store = ProjectStore(rebuilt, lock)
    try:
        with store.transaction() as db:
            db.execute("PRAGMA defer_foreign_keys = ON")  # rows come in table order; references are
            for table in _TABLES:  # checked at commit, after the lost ones are cleaned up below
                columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                rows = _readable_rows(source, table, columns)
                if rows is None:
                    report.unreadable_tables.append(table)
                    rows = []
                marks = ", ".join("?" * len(columns))
                db.executemany(f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
                report.rows[table] = len(rows)
            for table, column, target in _NULLABLE_REFERENCES:
                db.execute(
                    f"UPDATE {table} SET {column} = NULL "
                    f"WHERE {column} IS NOT NULL AND {column} NOT IN (SELECT id FROM {target})"
                )
            for table, column, target in _REQUIRED_REFERENCES:
                cur = db.execute(f"DELETE FROM {table} WHERE {column} NOT IN (SELECT id FROM {target})")
                report.dropped_instances += cur.rowcount
        report.rows["instances"] -= report.dropped_instances
        verdict = store.integrity_check()
        if verdict != "ok":
            raise StoreError(f"the rebuilt project file {rebuilt} failed its integrity check: {verdict}")
    finally:
        store.close()  # the last connection: SQLite folds the WAL into the file and removes it
        rebuilt.with_suffix(".lock").unlink(missing_ok=True)


def _readable_rows(source: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple] | None:
    """Every row of ``table`` SQLite can still read (``None`` when the table itself cannot be found).

    One ordered scan by rowid; where a damaged page stops it, single-row reads find the next readable
    row and the scan goes on from there.
    """
    select = f"SELECT rowid, {', '.join(columns)} FROM {table}"
    try:
        top_row = source.execute(f"SELECT max(rowid) FROM {table}").fetchone()
        top: int | None = int(top_row[0] or 0)
    except sqlite3.DatabaseError as exc:
        if "no such" in str(exc):
            return None
        top = None
    rows: dict[int, tuple] = {}
    last = 0
    while True:
        try:
            for row in source.execute(f"{select} WHERE rowid > ? ORDER BY rowid", (last,)):
                rows[row[0]] = tuple(row[1:])
                last = row[0]
            break
        except sqlite3.DatabaseError as exc:
            if "no such" in str(exc) and not rows:
                return None
        end = top if top is not None else last + _PROBE_SPAN
        found = False
        for rowid in range(last + 1, end + 1):
            try:
                row = source.execute(f"{select} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                rows[row[0]] = tuple(row[1:])
                last = rowid
                found = True
                break
        if not found:
            break
    return [rows[rowid] for rowid in sorted(rows)]


def _remove_with_sidecars(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.with_suffix(".lock").unlink(missing_ok=True)
