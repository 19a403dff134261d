"""The SQLite project store, on real files: schema, durability settings, edits, provenance, locking."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from app.project.locations import ProjectLocationError, remember_project_dir
from app.project.lock import ProjectLockedError
from app.project.records import ImageStatus, ImportCounts, NewInstance, Provenance
from app.project.store import (
    DB_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    ProjectStore,
    StaleImageError,
    StoreError,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def _instance(x0, y0, x1, y1, *, provenance=Provenance.EDITED, category_id=1, score=None, size=(40, 50)):
    full = np.zeros(size, dtype=np.uint8)
    full[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    rle["counts"] = rle["counts"].decode("ascii")
    return NewInstance(
        category_id=category_id,
        rle=rle,
        box=(x0, y0, x1, y1),
        area=int(full.sum()),
        provenance=provenance,
        score=score,
    )


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    with ProjectStore.open(folder) as s:
        s.add_images(["a.png", "sub/b.jpg"])
        s.ensure_categories(["cat", "dog"])
        yield s


def test_new_project_has_schema_wal_full_sync_and_foreign_keys(store):
    assert store.db_path.name == DB_NAME and store.db_path.parent.name == ".maskrcnn-studio"
    assert store.schema_version() == SCHEMA_VERSION
    db = sqlite3.connect(store.db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in db.execute("SELECT version FROM schema_migrations")] == [v for v, *_ in MIGRATIONS]
    # synchronous / foreign_keys are per connection: check the store's own.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.integrity_check() == "ok"


def test_images_are_added_once_and_paths_must_stay_inside(store):
    assert store.add_images(["a.png", "c.png"]) == 1
    assert [i.file_name for i in store.images()] == ["a.png", "c.png", "sub/b.jpg"]
    assert store.images()[0].status is ImageStatus.NEW
    for bad in ("../x.png", "/etc/passwd", "a\\b.png", ""):
        with pytest.raises(ValueError, match="relative path"):
            store.add_images([bad])


def test_edit_is_visible_to_a_fresh_connection_at_once(store):
    image = store.image_by_name("a.png")
    (new_id,) = store.apply_edit(image.id, add=[_instance(1, 2, 10, 12)])
    # A separate connection (another process would see the same) reads the committed edit immediately.
    other = sqlite3.connect(store.db_path)
    row = other.execute(
        "SELECT provenance, x1, y1, x2, y2, area FROM instances WHERE id = ?", (new_id,)
    ).fetchone()
    assert row == ("edited", 1.0, 2.0, 10.0, 12.0, 90)
    after = store.image(image.id)
    assert (after.revision, after.status) == (1, ImageStatus.CORRECTED)


def test_update_delete_and_restore_round_trip(store):
    image_id = store.image_by_name("a.png").id
    a, b = store.apply_edit(image_id, add=[_instance(0, 0, 5, 5), _instance(10, 10, 20, 20)])
    rec_a, rec_b = store.instances(image_id)
    moved = dataclasses.replace(rec_a, box=(1.0, 1.0, 6.0, 6.0), rle=_instance(1, 1, 6, 6).rle, category_id=2)
    store.apply_edit(image_id, update=[moved], delete=[b])
    (only,) = store.instances(image_id)
    assert (only.id, only.box, only.category_id) == (a, (1.0, 1.0, 6.0, 6.0), 2)
    assert mask_utils.decode(only.rle)[1:6, 1:6].all()
    store.apply_edit(image_id, restore=[rec_b])  # undo of the delete keeps the id
    assert [r.id for r in store.instances(image_id)] == [a, b]
    assert store.instances(image_id)[1].rle["counts"] == rec_b.rle["counts"]
    with pytest.raises(StaleImageError, match="no instance"):
        store.apply_edit(image_id, delete=[9999])
    with pytest.raises(StaleImageError, match="no image"):
        store.apply_edit(9999, add=[_instance(0, 0, 1, 1)])


def test_a_failed_edit_writes_nothing(store):
    image_id = store.image_by_name("a.png").id
    with pytest.raises(StaleImageError, match="FOREIGN KEY"):  # category 77 does not exist
        store.apply_edit(image_id, add=[_instance(0, 0, 5, 5), _instance(0, 0, 5, 5, category_id=77)])
    assert store.instances(image_id) == []
    assert store.image(image_id).revision == 0


def test_bad_instances_are_refused_with_a_message(store):
    image_id = store.image_by_name("a.png").id
    good = _instance(0, 0, 5, 5)
    with pytest.raises(ValueError, match="COCO RLE dict"):
        store.apply_edit(image_id, add=[dataclasses.replace(good, rle={"counts": "x"})])
    with pytest.raises(ValueError, match="x2 >= x1"):
        store.apply_edit(image_id, add=[dataclasses.replace(good, box=(5, 0, 1, 5))])


def test_prediction_replaces_only_untouched_predictions(store):
    image_id = store.image_by_name("a.png").id
    assert store.apply_prediction(
        image_id,
        expected_revision=0,
        model_version_id=None,
        image_size=(40, 50),
        instances=[_instance(0, 0, 5, 5, provenance=Provenance.PREDICTED, score=0.9)] * 2,
    )
    assert store.image(image_id).status is ImageStatus.PREDICTED
    assert (store.image(image_id).height, store.image(image_id).width) == (40, 50)
    store.apply_edit(image_id, add=[_instance(20, 20, 30, 30)])
    revision = store.image(image_id).revision
    # A result computed before the edit is not applied at all.
    assert not store.apply_prediction(
        image_id,
        expected_revision=0,
        model_version_id=None,
        image_size=(40, 50),
        instances=[_instance(1, 1, 2, 2, provenance=Provenance.PREDICTED, score=0.5)],
    )
    assert len(store.instances(image_id)) == 3
    # A re-run started after the edit replaces the two predictions and keeps the person's instance.
    assert store.apply_prediction(
        image_id,
        expected_revision=revision,
        model_version_id=None,
        image_size=(40, 50),
        instances=[_instance(1, 1, 2, 2, provenance=Provenance.PREDICTED, score=0.5)],
    )
    kinds = sorted((r.provenance.value, r.score) for r in store.instances(image_id))
    assert kinds == [("edited", None), ("predicted", 0.5)]
    assert store.image(image_id).status is ImageStatus.CORRECTED
    with pytest.raises(ValueError, match="only add predicted"):
        store.apply_prediction(
            image_id,
            expected_revision=revision,
            model_version_id=None,
            image_size=(40, 50),
            instances=[_instance(1, 1, 2, 2)],
        )


def test_verified_status_and_revision(store):
    image_id = store.image_by_name("a.png").id
    assert store.set_verified(image_id, True).status is ImageStatus.VERIFIED
    assert store.set_verified(image_id, False).status is ImageStatus.CORRECTED
    assert store.image(image_id).revision == 2


def test_import_does_not_duplicate(store):
    image_id = store.image_by_name("a.png").id
    imported = [
        _instance(0, 0, 5, 5, provenance=Provenance.IMPORTED),
        _instance(3, 3, 9, 9, provenance=Provenance.IMPORTED),
    ]
    assert store.import_instances(image_id, imported) == ImportCounts(added=2)
    assert store.import_instances(image_id, imported) == ImportCounts(duplicates=2)
    assert len(store.instances(image_id)) == 2
    assert store.image(image_id).status is ImageStatus.CORRECTED


def test_import_replaces_untouched_predictions_and_keeps_a_persons_instances(store):
    image_id = store.image_by_name("a.png").id
    predicted = [_instance(0, 0, 5, 5, provenance=Provenance.PREDICTED, score=s) for s in (0.9, 0.1)]
    store.apply_prediction(
        image_id, expected_revision=0, instances=predicted, model_version_id=None, image_size=(40, 50)
    )
    (edited,) = store.apply_edit(image_id, add=[_instance(20, 20, 30, 30)])
    revision = store.image(image_id).revision
    imported = [_instance(0, 0, 5, 5, provenance=Provenance.IMPORTED)] * 2  # the same object twice
    assert store.import_instances(image_id, imported) == ImportCounts(added=1, duplicates=1, replaced=2)
    kept = store.instances(image_id)
    assert [(r.id, r.provenance) for r in kept] == [
        (edited, Provenance.EDITED),
        (kept[1].id, Provenance.IMPORTED),
    ]
    assert store.image(image_id).revision == revision + 1  # a model result made before it is not applied
    # A file listing the image without annotations calls it negative: the person's instances stay, and the
    # contradiction is counted instead of the image being verified.
    assert store.import_instances(image_id, []) == ImportCounts(conflicts=1)
    assert len(store.instances(image_id)) == 2
    assert store.image(image_id).status is ImageStatus.CORRECTED


def test_settings_models_and_training_runs_persist(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    with ProjectStore.open(folder) as store:
        store.add_images(["x.png"])
        store.set_setting("score_threshold", 0.35)
        store.set_setting("last_image_id", 1)
        mv = store.add_model_version(
            name="demo", arch="r18", path="/m.pt", sha256="ab", categories=[(1, "c")]
        )
        assert (
            store.add_model_version(name="demo", arch="r18", path="/m.pt", sha256="ab", categories=[(1, "c")])
            == mv
        )
        run = store.start_training_run(base_model_version_id=mv, config={"epochs": 2})
        store.add_model_version(
            name="ft", arch="r18", path="/ft.pt", sha256="cd", categories=[(1, "c")], training_run_id=run
        )
        store.finish_training_run(run, status="finished", metrics={"mask_ap": 0.5})
        with pytest.raises(ValueError, match="finished, failed or cancelled"):
            store.finish_training_run(run, status="done", metrics={})
    with ProjectStore.open(folder) as store:
        assert store.get_setting("score_threshold") == 0.35
        assert store.get_setting("last_image_id") == 1
        assert store.get_setting("missing", "default") == "default"
        assert [m.name for m in store.model_versions()] == ["demo", "ft"]
        assert store.model_versions()[0].categories == ((1, "c"),)
        (run_rec,) = store.training_runs()
        assert (run_rec.status, run_rec.metrics, run_rec.output_model_version_id) == (
            "finished",
            {"mask_ap": 0.5},
            2,
        )
        assert store.images_dir == folder.resolve()


def test_second_open_is_refused_in_process_and_from_another_process(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    store = ProjectStore.open(folder)
    with pytest.raises(ProjectLockedError, match=f"already open by process {os.getpid()}"):
        ProjectStore.open(folder)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from app.project.store import ProjectStore
        from app.project.lock import ProjectLockedError
        try:
            ProjectStore.open({str(folder)!r})
        except ProjectLockedError as exc:
            print("refused:", exc)
        else:
            print("opened")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("refused: this project is already open by process"), out
    store.close()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "opened"


def test_lock_of_a_killed_process_is_released(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    code = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from app.project.store import ProjectStore; "
        f"s = ProjectStore.open({str(folder)!r}); print('open', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(ProjectLockedError):
            ProjectStore.open(folder)
    finally:
        child.kill()
        child.wait()
    ProjectStore.open(folder).close()


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_gets_a_clear_error_and_a_chosen_location_works(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    folder.chmod(0o555)
    try:
        with pytest.raises(ProjectLocationError, match="read-only") as info:
            ProjectStore.open(folder)
        assert info.value.suggested_dir is not None
        elsewhere = info.value.suggested_dir
        with ProjectStore.open(folder, project_dir=elsewhere) as store:
            store.add_images(["a.png"])
        remember_project_dir(folder, elsewhere)
        with ProjectStore.open(folder) as store:  # found again without asking
            assert store.db_path.parent == elsewhere
            assert [i.file_name for i in store.images()] == ["a.png"]
    finally:
        folder.chmod(0o755)


def test_unwritable_project_dir_is_a_location_error(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(ProjectLocationError, match="cannot keep the project"):
        ProjectStore.open(folder, project_dir=blocker / "project")
    with pytest.raises(ProjectLocationError, match="not a folder"):
        ProjectStore.open(tmp_path / "missing")


def test_newer_schema_and_garbage_files_are_refused(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    ProjectStore.open(folder).close()
    db_path = folder / ".maskrcnn-studio" / DB_NAME
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer Mask R-CNN Studio"):
        ProjectStore.open(folder)
    for suffix in ("-wal", "-shm", ""):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a readable project database"):
        ProjectStore.open(folder)
    # The refused open released its lock.
    from app.project.lock import ProjectLock

    ProjectLock(folder / ".maskrcnn-studio" / "project.lock").release()


def test_sqlite_failures_come_out_as_domain_errors(store):
    """Callers see StoreError / StaleImageError naming the problem, never sqlite3's exceptions."""
    image_id = store.image_by_name("a.png").id
    store._db.execute("PRAGMA query_only = ON")  # what a read-only file does to writes
    with pytest.raises(StoreError, match="readonly"):
        store.apply_edit(image_id, add=[_instance(0, 0, 5, 5)])
    store._db.execute("PRAGMA query_only = OFF")
    assert store.instances(image_id) == [] and store.image(image_id).revision == 0
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.images()
    with pytest.raises(StoreError, match="is closed"):
        store.set_setting("last_image_id", image_id)
