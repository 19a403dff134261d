"""Undo commands against a real project file: every command round-trips (redo / undo / redo) pixel for pixel,
every step is on disk at once, ids survive, and the history survives switching images."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import rect_mask
from PySide6.QtGui import QUndoStack

from app.project.mask_ops import combine, polygon_mask, stroke_mask
from app.project.records import ImageResult, ImageStatus, NewInstance, Provenance
from app.project.store import ProjectStore
from app.session import commands
from app.session.commands import EditContext
from app.session.document import Document
from maskrcnn_core.masks import mask_to_rle, rle_to_mask
from maskrcnn_core.types import CroppedMask

SIZE = (60, 80)


def _rect(x0, y0, x1, y1, size=SIZE) -> CroppedMask:
    return rect_mask(x0, y0, x1, y1, size)


def _new(mask: CroppedMask, category_id: int, provenance=Provenance.PREDICTED, score=0.9) -> NewInstance:
    return commands.new_instance(mask, category_id, provenance=provenance, score=score)


@pytest.fixture
def project(qapp, tmp_path):
    """A project of two blank images with two predicted rectangles on the first."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (SIZE[1], SIZE[0])).save(folder / name)
    store = ProjectStore.open(folder)
    doc = Document(store)
    doc.scan()
    cats = doc.ensure_categories(["cat", "dog"])
    a, b = (image.id for image in doc.images())
    store.apply_prediction(
        a,
        expected_revision=0,
        instances=[_new(_rect(5, 5, 20, 20), cats["cat"]), _new(_rect(40, 10, 70, 50), cats["dog"])],
        model_version_id=None,
        image_size=SIZE,
    )
    doc.scan()
    stack = QUndoStack()
    messages: list[str] = []
    ctx = EditContext(doc, messages.append)
    yield doc, ctx, stack, cats, (a, b), messages, folder
    stack.clear()
    store.close()


def _snapshot(store: ProjectStore, image_id: int) -> list[tuple]:
    return [
        (r.id, r.category_id, r.rle["counts"], r.box, r.area, r.provenance) for r in store.instances(image_id)
    ]


def _on_disk(folder, image_id) -> list[tuple]:
    """What a second connection reads from the file: the committed state, not a cache."""
    import sqlite3

    from app.project.locations import resolve_project_dir

    db = sqlite3.connect(resolve_project_dir(folder, None) / "project.sqlite")
    try:
        rows = db.execute(
            "SELECT id, category_id, rle_counts, provenance FROM instances WHERE image_id = ? ORDER BY id",
            (image_id,),
        ).fetchall()
    finally:
        db.close()
    return [tuple(r) for r in rows]


def _round_trip(doc, stack, folder, image_id, command):
    """Push, undo, redo: checks each state in memory and on disk; returns (before, after)."""
    before, before_disk = _snapshot(doc.store, image_id), _on_disk(folder, image_id)
    stack.push(command)
    after, after_disk = _snapshot(doc.store, image_id), _on_disk(folder, image_id)
    assert after != before
    stack.undo()
    assert _snapshot(doc.store, image_id) == before
    assert _on_disk(folder, image_id) == before_disk
    stack.redo()
    assert _snapshot(doc.store, image_id) == after
    assert _on_disk(folder, image_id) == after_disk
    return before, after


def test_brush_stroke_is_one_delta_and_round_trips(project):
    doc, ctx, stack, _cats, (a, _b), _msgs, folder = project
    record = doc.instances(a)[0]
    old = rle_to_mask(record.rle)
    stroke = stroke_mask([(20.0, 12.0), (30.0, 12.0), (30.0, 25.0)], 2.0, SIZE)
    new = combine(old, stroke, add=True)
    command = commands.edit_mask(ctx, record, new, "Brush")
    # The delta covers only the changed pixels, not the image.
    delta = command.changes[0].delta
    assert delta.changed == new.area - old.area
    assert delta.before.shape[0] * delta.before.shape[1] < SIZE[0] * SIZE[1] // 4
    _round_trip(doc, stack, folder, a, command)
    edited = doc.instances(a)[0]
    assert np.array_equal(rle_to_mask(edited.rle).to_full(), new.to_full())
    assert edited.provenance is Provenance.EDITED
    assert edited.box == (5.0, 5.0, 32.0, 27.0) and edited.area == new.area
    assert doc.image(a).status is ImageStatus.CORRECTED
    stack.undo()
    assert doc.instances(a)[0].provenance is Provenance.PREDICTED
    assert doc.instances(a)[0].rle["counts"] == mask_to_rle(old)["counts"]


def test_erasing_everything_deletes_and_undo_restores_same_id(project):
    doc, ctx, stack, _cats, (a, _b), _msgs, folder = project
    record = doc.instances(a)[0]
    command = commands.edit_mask(ctx, record, commands_empty(), "Eraser")
    _round_trip(doc, stack, folder, a, command)
    assert record.id not in [r.id for r in doc.instances(a)]
    stack.undo()
    assert doc.instances(a)[0].id == record.id


def commands_empty() -> CroppedMask:
    return CroppedMask(0, 0, np.zeros((0, 0), dtype=bool), SIZE)


def test_add_delete_category_verify_merge_split_round_trip(project):
    doc, ctx, stack, cats, (a, _b), _msgs, folder = project
    polygon = polygon_mask([(10, 30), (30, 30), (30, 55), (10, 55)], SIZE)
    assert polygon.area == 20 * 25
    add = commands.add_instance(ctx, a, polygon, cats["cat"], "Polygon")
    _round_trip(doc, stack, folder, a, add)
    new_id = add.added_ids[0]
    stack.undo()
    stack.redo()
    assert add.added_ids == [new_id]  # redo brings it back under the same id
    records = doc.instances(a)
    _round_trip(doc, stack, folder, a, commands.set_category(ctx, records[:1], cats["dog"]))
    _round_trip(doc, stack, folder, a, commands.verify(ctx, a, doc.instances(a)[:2]))
    assert [r.provenance for r in doc.instances(a)][:2] == [Provenance.VERIFIED] * 2
    _round_trip(doc, stack, folder, a, commands.delete_instances(ctx, doc.instances(a)[1:2]))
    records = doc.instances(a)
    merge = commands.merge_instances(ctx, records)
    _, after = _round_trip(doc, stack, folder, a, merge)
    assert len(after) == 1
    merged = rle_to_mask(doc.instances(a)[0].rle)
    assert merged.area == sum(r.area for r in records)  # disjoint parts, nothing lost
    split = commands.split_instance(ctx, doc.instances(a)[0])
    _, after = _round_trip(doc, stack, folder, a, split)
    assert sorted(r.area for r in doc.instances(a)) == sorted(r.area for r in records)
    # Unwind everything: back to the two predictions, exactly.
    while stack.canUndo():
        stack.undo()
    assert [(r.provenance, r.score) for r in doc.instances(a)] == [(Provenance.PREDICTED, 0.9)] * 2


def test_accept_whole_image_round_trip(project):
    doc, ctx, stack, _cats, (a, _b), _msgs, _folder = project
    command = commands.verify(ctx, a, doc.instances(a), whole_image=True, image_was_verified=False)
    stack.push(command)
    assert doc.image(a).status is ImageStatus.VERIFIED
    assert doc.store.image(a).status is ImageStatus.VERIFIED
    assert {r.provenance for r in doc.instances(a)} == {Provenance.VERIFIED}
    stack.undo()
    assert doc.image(a).status is ImageStatus.CORRECTED
    assert {r.provenance for r in doc.instances(a)} == {Provenance.PREDICTED}


def test_history_survives_switching_images(project):
    doc, ctx, stack, cats, (a, b), _msgs, _folder = project
    doc.set_current_image(a)
    stack.push(commands.delete_instances(ctx, doc.instances(a)[:1]))
    doc.set_current_image(b)
    stack.push(commands.add_instance(ctx, b, _rect(1, 1, 9, 9), cats["dog"], "Polygon"))
    doc.set_current_image(a)
    assert len(doc.instances(a)) == 1 and len(doc.instances(b)) == 1
    stack.undo()
    stack.undo()
    assert len(doc.instances(a)) == 2 and len(doc.instances(b)) == 0
    stack.redo()
    stack.redo()
    assert len(doc.instances(a)) == 1 and len(doc.instances(b)) == 1


def test_undo_delete_when_its_id_was_taken_meanwhile(project):
    doc, ctx, stack, cats, (a, b), _msgs, _folder = project
    top = max(doc.instances(a), key=lambda r: r.id)
    stack.push(commands.delete_instances(ctx, [top]))
    # Outside this history (a COCO import, a model run) the freed highest id goes to a new instance.
    doc.apply_edit(b, add=[_new(_rect(0, 0, 5, 5), cats["cat"])])
    assert doc.instances(b)[0].id == top.id
    stack.undo()
    back = [r for r in doc.instances(a) if r.rle["counts"] == top.rle["counts"]]
    assert len(back) == 1 and back[0].id != top.id
    assert ctx.resolve(top.id) == back[0].id
    stack.redo()  # deletes the instance under its new id, not the other image's
    assert [r.rle["counts"] for r in doc.instances(a)].count(top.rle["counts"]) == 0
    assert len(doc.instances(b)) == 1


def test_command_whose_instance_vanished_is_dropped_with_a_message(project):
    doc, ctx, stack, cats, (a, _b), messages, _folder = project
    record = doc.instances(a)[0]
    stack.push(commands.set_category(ctx, [record], cats["dog"]))
    stack.undo()  # the instance is an untouched prediction again
    # A model run replaces untouched predictions.
    outcome = doc.apply_result(
        ImageResult(a, SIZE, ()), expected_revision=doc.image(a).revision, model_version_id=None
    )
    assert outcome.applied
    stack.redo()
    assert messages and "Could not redo" in messages[-1]
    assert stack.count() == 0  # obsolete: removed, nothing half-applied
    assert doc.instances(a) == []


def _refuse_writes(store: ProjectStore) -> None:
    """Make the open project refuse every write as SQLite does for a read-only file ("attempt to write a
    readonly database"); a ``chmod`` cannot do it for a connection already open, nor for root."""
    store._db.execute("PRAGMA query_only = ON")


def _allow_writes(store: ProjectStore) -> None:
    store._db.execute("PRAGMA query_only = OFF")


def test_an_edit_the_project_file_refuses_is_dropped_and_nothing_is_lost(project):
    doc, ctx, stack, cats, (a, _b), messages, folder = project
    record = doc.instances(a)[0]
    stack.push(commands.set_category(ctx, [record], cats["dog"]))  # a step that stays
    before, before_disk = _snapshot(doc.store, a), _on_disk(folder, a)
    _refuse_writes(doc.store)
    stack.push(commands.delete_instances(ctx, doc.instances(a)))
    assert "Could not redo “Delete”" in messages[-1] and "readonly" in messages[-1]
    assert stack.count() == 1  # the refused command is gone, the earlier one kept
    assert _snapshot(doc.store, a) == before and _on_disk(folder, a) == before_disk
    assert [r.id for r in doc.instances(a)] == [r.id for r in doc.store.instances(a)]
    stack.undo()  # also refused: the change stays, on screen as on disk
    assert "Could not undo “Change category”" in messages[-1]
    assert stack.count() == 0
    assert _snapshot(doc.store, a) == before and _on_disk(folder, a) == before_disk
    assert doc.instances(a)[0].category_id == cats["dog"]
    _allow_writes(doc.store)
    stack.push(commands.delete_instances(ctx, doc.instances(a)[:1]))
    assert len(_on_disk(folder, a)) == 1


def test_category_commands_the_project_file_refuses_change_nothing(project):
    doc, ctx, stack, cats, (a, _b), messages, _folder = project
    before = doc.store.categories()
    _refuse_writes(doc.store)
    add = commands.AddCategory(ctx, "bird")
    stack.push(add)
    assert add.category_id is None and "Could not redo “Add category bird”" in messages[-1]
    stack.push(commands.EditCategory(ctx, cats["cat"], name="kitten"))
    stack.push(commands.DeleteCategory(ctx, cats["dog"], cats["cat"]))
    assert stack.count() == 0 and len(messages) == 3
    assert doc.store.categories() == before and doc.categories() == before
    assert {r.category_id for r in doc.instances(a)} == {cats["cat"], cats["dog"]}


def test_an_edit_after_the_project_was_closed_is_refused_with_a_message(project):
    doc, ctx, stack, _cats, (a, _b), messages, folder = project
    before_disk = _on_disk(folder, a)
    command = commands.delete_instances(ctx, doc.instances(a))
    doc.store.close()
    stack.push(command)  # no exception escapes into Qt
    assert "is closed" in messages[-1]
    assert stack.count() == 0
    with ProjectStore.open(folder) as store:
        assert len(store.instances(a)) == 2
    assert _on_disk(folder, a) == before_disk
