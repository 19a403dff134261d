"""Undo commands: the only code that changes annotations. Each one is committed to the store as it runs.

An :class:`EditCommand` holds a delta for one image: per changed instance the box and before / after
pixels of its mask (:class:`~app.project.mask_ops.MaskDelta`) and its before / after category and provenance,
the instances it added and the records it deleted. ``redo`` and ``undo`` each commit one store transaction
through :meth:`Document.apply_edit`, so the project on disk always matches what the screen shows and
what the undo stack believes. Commands name images and instances by id, so the history keeps working
after switching images.

Instance ids: undoing a delete restores the instance under its old id. If that id has been given to
another instance since (SQLite reuses the highest id after a delete), the instance comes back under a
new id and :class:`EditContext` remembers the mapping, so later commands still find it.

A command that can no longer be applied (its instance was replaced by a model run in the meantime, or the
project file cannot be written: read-only, a full disk, closed) marks itself obsolete, which drops it from
the stack, and says why through :attr:`EditContext.notify`. Nothing is half-applied: each step is one
store transaction, rolled back when it fails. Commands see the store's domain errors
(:class:`~app.project.store.StoreError`, :class:`~app.project.store.StaleImageError`), never SQLite's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from PySide6.QtGui import QUndoCommand

from app.project.mask_ops import MaskDelta, instance_box, merge, split
from app.project.records import CategoryRecord, InstanceRecord, NewInstance, Provenance
from app.project.store import IdTakenError, StaleImageError, StoreError
from app.session.document import Document
from maskrcnn_core.masks import mask_to_rle, rle_to_mask
from maskrcnn_core.types import CroppedMask


class EditContext:
    """What commands share: the document, the id mapping of restored instances, a message sink."""

    def __init__(self, document: Document, notify: Callable[[str], None] | None = None) -> None:
        self.document = document
        self.notify = notify or (lambda _message: None)
        self._moved: dict[int, int] = {}

    def resolve(self, instance_id: int) -> int:
        """The id the instance has now (different from ``instance_id`` only after an id clash)."""
        while instance_id in self._moved:
            instance_id = self._moved[instance_id]
        return instance_id

    def record(self, image_id: int, instance_id: int) -> InstanceRecord:
        instance_id = self.resolve(instance_id)
        for record in self.document.instances(image_id):
            if record.id == instance_id:
                return record
        raise StaleImageError(f"image {image_id} no longer has instance {instance_id}")

    def commit(
        self,
        image_id: int,
        *,
        add: Sequence[NewInstance] = (),
        restore: Sequence[InstanceRecord] = (),
        update: Sequence[InstanceRecord] = (),
        delete: Sequence[int] = (),
        verified: bool | None = None,
    ) -> tuple[list[int], list[int]]:
        """One store transaction; returns the ids of ``add`` and the ids ``restore`` ended up with."""
        restore = [replace(r, id=self.resolve(r.id)) for r in restore]
        delete = [self.resolve(i) for i in delete]
        try:
            ids = self.document.apply_edit(
                image_id, add=add, restore=restore, update=update, delete=delete, verified=verified
            )
            return ids, [r.id for r in restore]
        except IdTakenError:
            pass
        # An old id is taken (the transaction rolled back): bring the instances back under new ids.
        as_new = [_as_new(r) for r in restore]
        ids = self.document.apply_edit(
            image_id, add=[*add, *as_new], update=update, delete=delete, verified=verified
        )
        restored = ids[len(add) :]
        for record, new_id in zip(restore, restored, strict=True):
            self._moved[record.id] = new_id
        return ids[: len(add)], restored


@dataclass(frozen=True)
class InstanceState:
    """The editable fields of an instance other than its mask."""

    category_id: int
    provenance: Provenance

    @classmethod
    def of(cls, record: InstanceRecord) -> InstanceState:
        return cls(record.category_id, record.provenance)


@dataclass(frozen=True, eq=False)
class InstanceChange:
    """One instance's change: its mask delta (``None``: mask unchanged) and fields before / after."""

    instance_id: int
    delta: MaskDelta | None
    before: InstanceState
    after: InstanceState


class EditCommand(QUndoCommand):
    """An edit of one image: changed, added and deleted instances, and optionally the image's verified
    state ``verified = (before, after)``. Build it with the functions below, then push it."""

    def __init__(
        self,
        context: EditContext,
        image_id: int,
        text: str,
        *,
        changes: Sequence[InstanceChange] = (),
        added: Sequence[NewInstance] = (),
        deleted: Sequence[InstanceRecord] = (),
        verified: tuple[bool, bool] | None = None,
    ) -> None:
        super().__init__(text)
        self.context = context
        self.image_id = image_id
        self.changes = tuple(changes)
        self.added = tuple(added)
        self.deleted = tuple(deleted)
        self.verified = verified
        self.added_ids: list[int] = []  # the ids the added instances have in the store
        self._added_records: list[InstanceRecord] = []  # to bring them back with the same ids on redo

    def redo(self) -> None:
        self._run(forward=True)

    def undo(self) -> None:
        self._run(forward=False)

    def _run(self, *, forward: bool) -> None:
        ctx = self.context
        try:
            update = [self._changed(change, forward) for change in self.changes]
            if forward:
                first = not self._added_records and self.added
                new_ids, restored = ctx.commit(
                    self.image_id,
                    add=self.added if first else (),
                    restore=self._added_records,
                    update=update,
                    delete=[r.id for r in self.deleted],
                    verified=None if self.verified is None else self.verified[1],
                )
                if first:
                    self.added_ids = new_ids
                    self._added_records = [ctx.record(self.image_id, i) for i in new_ids]
                else:
                    self.added_ids = restored
            else:
                ctx.commit(
                    self.image_id,
                    restore=self.deleted,
                    update=update,
                    delete=self.added_ids,
                    verified=None if self.verified is None else self.verified[0],
                )
        except (StaleImageError, StoreError) as exc:
            _drop(self, ctx, forward, exc)

    def _changed(self, change: InstanceChange, forward: bool) -> InstanceRecord:
        record = self.context.record(self.image_id, change.instance_id)
        state = change.after if forward else change.before
        record = replace(record, category_id=state.category_id, provenance=state.provenance)
        if change.delta is None:
            return record
        return with_mask(record, change.delta.apply(rle_to_mask(record.rle), forward=forward))


def _drop(command: QUndoCommand, context: EditContext, forward: bool, error: Exception) -> None:
    """``command`` failed with a domain error (the store rolled it back): drop it and say why."""
    command.setObsolete(True)  # QUndoStack drops it; the rest of the history stays usable
    context.notify(f"Could not {'redo' if forward else 'undo'} “{command.text()}”: {error}")


def with_mask(record: InstanceRecord, mask: CroppedMask) -> InstanceRecord:
    """``record`` with ``mask`` as its RLE, and its box and area computed from the mask."""
    return replace(record, rle=mask_to_rle(mask), box=instance_box(mask), area=mask.area)


def new_instance(
    mask: CroppedMask,
    category_id: int,
    *,
    provenance: Provenance = Provenance.EDITED,
    score: float | None = None,
    model_version_id: int | None = None,
) -> NewInstance:
    return NewInstance(
        category_id=category_id,
        rle=mask_to_rle(mask),
        box=instance_box(mask),
        area=mask.area,
        provenance=provenance,
        score=score,
        model_version_id=model_version_id,
    )


def _as_new(record: InstanceRecord) -> NewInstance:
    return NewInstance(
        category_id=record.category_id,
        rle=record.rle,
        box=record.box,
        area=record.area,
        provenance=record.provenance,
        score=record.score,
        model_version_id=record.model_version_id,
        iscrowd=record.iscrowd,
    )


# ------------------------------------------------------------------------------------- command builders
def edit_mask(
    context: EditContext, record: InstanceRecord, mask: CroppedMask, text: str
) -> EditCommand | None:
    """Replace ``record``'s mask by ``mask`` (a person's edit). An empty mask deletes the instance;
    ``None`` when nothing changes."""
    if mask.area == 0:
        return delete_instances(context, [record], text)
    delta = MaskDelta.between(rle_to_mask(record.rle), mask)
    if delta.changed == 0:
        return None
    before = InstanceState.of(record)
    change = InstanceChange(record.id, delta, before, replace(before, provenance=Provenance.EDITED))
    return EditCommand(context, record.image_id, text, changes=[change])


def add_instance(
    context: EditContext, image_id: int, mask: CroppedMask, category_id: int, text: str, **fields
) -> EditCommand | None:
    """A new instance of ``mask`` (``fields``: provenance, score, model_version_id); ``None`` if empty."""
    if mask.area == 0:
        return None
    return EditCommand(context, image_id, text, added=[new_instance(mask, category_id, **fields)])


def delete_instances(
    context: EditContext, records: Sequence[InstanceRecord], text: str = "Delete"
) -> EditCommand | None:
    if not records:
        return None
    return EditCommand(context, records[0].image_id, text, deleted=records)


def set_category(
    context: EditContext, records: Sequence[InstanceRecord], category_id: int
) -> EditCommand | None:
    """Give the instances another category (a person's correction: provenance becomes ``edited``)."""
    changes = [
        InstanceChange(r.id, None, InstanceState.of(r), InstanceState(category_id, Provenance.EDITED))
        for r in records
        if r.category_id != category_id
    ]
    if not changes:
        return None
    return EditCommand(context, records[0].image_id, "Change category", changes=changes)


def verify(
    context: EditContext,
    image_id: int,
    records: Sequence[InstanceRecord],
    *,
    whole_image: bool = False,
    image_was_verified: bool = False,
) -> EditCommand | None:
    """Accept instances (provenance ``verified``), and with ``whole_image`` the image itself."""
    changes = [
        InstanceChange(r.id, None, InstanceState.of(r), InstanceState(r.category_id, Provenance.VERIFIED))
        for r in records
        if r.provenance is not Provenance.VERIFIED
    ]
    if not changes and (not whole_image or image_was_verified):
        return None
    return EditCommand(
        context,
        image_id,
        "Accept image" if whole_image else "Accept",
        changes=changes,
        verified=(image_was_verified, True) if whole_image else None,
    )


def merge_instances(context: EditContext, records: Sequence[InstanceRecord]) -> EditCommand | None:
    """One instance (the first one's id and category) from the union of ``records``' masks."""
    if len(records) < 2:
        return None
    first, rest = records[0], records[1:]
    old = rle_to_mask(first.rle)
    merged = merge([old, *(rle_to_mask(r.rle) for r in rest)])
    before = InstanceState.of(first)
    change = InstanceChange(
        first.id, MaskDelta.between(old, merged), before, replace(before, provenance=Provenance.EDITED)
    )
    return EditCommand(
        context, first.image_id, f"Merge {len(records)} instances", changes=[change], deleted=rest
    )


def split_instance(context: EditContext, record: InstanceRecord) -> EditCommand | None:
    """One instance per connected part: the largest keeps the id, the others are new instances."""
    mask = rle_to_mask(record.rle)
    parts = split(mask)
    if len(parts) < 2:
        return None
    before = InstanceState.of(record)
    change = InstanceChange(
        record.id, MaskDelta.between(mask, parts[0]), before, replace(before, provenance=Provenance.EDITED)
    )
    added = [new_instance(part, record.category_id) for part in parts[1:]]
    return EditCommand(context, record.image_id, f"Split into {len(parts)}", changes=[change], added=added)


# ------------------------------------------------------------------------------------------ categories
class _CategoryCommand(QUndoCommand):
    """A change of the project's categories; a domain error drops it with a message (nothing changed)."""

    def __init__(self, context: EditContext, text: str) -> None:
        super().__init__(text)
        self.context = context

    def redo(self) -> None:
        self._guarded(self._redo, forward=True)

    def undo(self) -> None:
        self._guarded(self._undo, forward=False)

    def _guarded(self, step: Callable[[], None], *, forward: bool) -> None:
        try:
            step()
        except (StaleImageError, StoreError) as exc:
            _drop(self, self.context, forward, exc)

    def _redo(self) -> None:
        raise NotImplementedError

    def _undo(self) -> None:
        raise NotImplementedError


class AddCategory(_CategoryCommand):
    """A new, empty category: what Categories ▸ Add (and "add the model's classes") push.

    Categories that appear as a side effect are not undo steps: the first category of an empty project
    when a person draws, and a model's class that a prediction or a box prompt brings in (see
    :meth:`Document.ensure_categories`). ``category_id`` stays ``None`` when the store refused it.
    """

    def __init__(self, context: EditContext, name: str) -> None:
        super().__init__(context, f"Add category {name}")
        self.name = name
        self.category_id: int | None = None
        self._record: CategoryRecord | None = None

    def _redo(self) -> None:
        doc = self.context.document
        if self._record is None:
            category_id = doc.ensure_categories([self.name])[self.name]
            self._record = doc.category(category_id)
            self.category_id = category_id
        else:
            doc.restore_category(self._record, {})

    def _undo(self) -> None:
        if self.category_id is not None:
            self.context.document.delete_category(self.category_id, None)


class EditCategory(_CategoryCommand):
    """Rename and / or recolour a category."""

    def __init__(
        self, context: EditContext, category_id: int, *, name: str | None = None, color: str | None = None
    ) -> None:
        super().__init__(context, "Rename category" if name is not None else "Recolour category")
        self.category_id = category_id
        old = context.document.category(category_id)
        self.before = (old.name, old.color)
        self.after = (name or old.name, color or old.color)

    def _redo(self) -> None:
        self.context.document.update_category(self.category_id, name=self.after[0], color=self.after[1])

    def _undo(self) -> None:
        self.context.document.update_category(self.category_id, name=self.before[0], color=self.before[1])


class DeleteCategory(_CategoryCommand):
    """Delete a category; its instances (in every image) go to ``reassign_to``. Undo gives them back."""

    def __init__(self, context: EditContext, category_id: int, reassign_to: int | None) -> None:
        record = context.document.category(category_id)
        super().__init__(context, f"Delete category {record.name}")
        self.record = record
        self.reassign_to = reassign_to
        self.moved: dict[int, list[int]] = {}

    def _redo(self) -> None:
        self.moved = self.context.document.delete_category(self.record.id, self.reassign_to)

    def _undo(self) -> None:
        self.context.document.restore_category(self.record, self.moved)
