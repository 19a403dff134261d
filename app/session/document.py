"""The annotation state of the open project: images, categories, instances, view settings.

A ``QObject`` (QtCore only, no widgets) so that views can follow it through signals. All writes go
through the :class:`~app.project.store.ProjectStore` first and are durable when a method returns; the
in-memory copies here are caches of what the store holds. Undo commands call :meth:`Document.apply_edit`,
so every edit is committed to the store in the same step as it is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.project.coco_io import ExportSummary, ImportSummary, export_coco, import_annotations
from app.project.export_options import ExportFormat, ExportOnly, FolderFormat
from app.project.folder_exports import export_folder
from app.project.folder_scan import scan_folder
from app.project.label_image_io import LabelExportSummary
from app.project.model_results import ApplyOutcome, apply_model_result, needs_segmentation
from app.project.records import (
    CategoryRecord,
    ImageRecord,
    ImageResult,
    ImageStatus,
    ImageUncertainty,
    InstanceRecord,
    NewInstance,
)
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore, StoreError
from app.project.training_set import eligible_images
from app.project.truth import counts_as_annotation, is_crowd_region
from app.project.view_pyramid import pyramid_folder
from app.project.yolo_io import YoloExportSummary
from app.session.model_registry import ModelRegistry
from maskrcnn_core.paths import check_output_dir, check_output_file


class ReadOnlyDocumentError(StoreError):
    """An edit of a document opened read-only (a damaged project's readable copy); nothing was written."""


class Document(QObject):
    """The open project. Methods are called on the GUI thread only."""

    imagesReset = Signal()  # the image list changed as a whole (folder scanned)
    imageChanged = Signal(int)  # status / error / size of one image
    instancesChanged = Signal(int)  # the instances of one image
    categoriesChanged = Signal()
    scoreThresholdChanged = Signal(float)
    currentImageChanged = Signal(int)  # -1 for none
    storeBusy = Signal(str)  # "another program is using the project file ...; retrying…"
    saved = Signal()  # a write is committed: everything so far is in the project file
    saveFailed = Signal(str)  # a write was refused (why); the file holds what it held before

    def __init__(
        self,
        store: ProjectStore,
        parent: QObject | None = None,
        *,
        damaged_project_dir: Path | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``damaged_project_dir``: ``store`` is a readable copy of that folder's damaged project file, and
        the document is read-only: its images, instances and model versions can be looked at and exported,
        every edit raises :class:`ReadOnlyDocumentError`. ``on_close`` runs after the store is closed (it
        removes the temporary folder a readable copy lives in)."""
        super().__init__(parent)
        self.store = store
        self.damaged_project_dir = damaged_project_dir
        self._on_close = on_close
        self.folder = store.images_dir
        self._images: list[ImageRecord] = []
        self._row_of: dict[int, int] = {}
        self._runtime_errors: dict[int, str] = {}  # e.g. "file not found": true now, not stored
        self._instances: dict[int, list[InstanceRecord]] = {}
        self._categories: dict[int, CategoryRecord] = {}
        self._uncertainties: dict[int, ImageUncertainty] | None = None  # read when first asked for
        self.settings = ProjectSettings(store)
        store.on_busy = self._store_busy
        store.on_written = self._store_written
        # The project's model versions, runs and active model go through the document too: the registry
        # is its child and the only code that decides which model is active.
        self.models = ModelRegistry(store, self)
        self._score_threshold = self.settings.score_threshold
        self._current = -1
        self._reload_categories()

    def close(self) -> None:
        """Release the project (its store and lock); everything is already saved."""
        self.store.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    @property
    def read_only(self) -> bool:
        """Opened from a damaged project file's readable copy: looked at and exported, never edited."""
        return self.damaged_project_dir is not None

    def check_writable(self) -> None:
        """The one check every annotation edit passes first: a read-only document raises
        :class:`ReadOnlyDocumentError`."""
        if self.read_only:
            raise ReadOnlyDocumentError(
                "the project is open read-only (its file is damaged): nothing was changed — "
                "File ▸ Repair project…"
            )

    # ---------------------------------------------------------------------------------------------- images
    def scan(self) -> int:
        """Add the folder's new image files to the project; returns how many were new.

        Files that disappeared keep their annotations and show "file not found".
        """
        found = scan_folder(self.folder)
        added = 0 if self.read_only else self.store.add_images(found.file_names)
        self._images = self.store.images()
        self._row_of = {image.id: row for row, image in enumerate(self._images)}
        present = set(found.file_names)
        self._runtime_errors = {}
        for image in self._images:
            if image.file_name not in present:
                self._runtime_errors[image.id] = "file not found in the folder"
            elif image.file_name in found.errors and image.error != found.errors[image.file_name]:
                if self.read_only:
                    self._runtime_errors[image.id] = found.errors[image.file_name]
                    continue
                self.store.set_image_info(image.id, error=found.errors[image.file_name])
                self._images[self._row_of[image.id]] = self.store.image(image.id)
        self.imagesReset.emit()
        return added

    def import_annotations(
        self,
        path: Path,
        *,
        crowd_as_instances: bool = False,
        class_table: Path | None = None,
        category: str | None = None,
    ) -> ImportSummary:
        """Import a COCO or labelme file, or a folder (labelme files, a YOLO dataset, label images), as a
        person's annotations.

        One store transaction (see :func:`app.project.coco_io.import_annotations`, which also says what
        ``crowd_as_instances``, ``class_table`` and ``category`` are for: in each image the file
        annotates, its annotations replace the untouched predictions). Raises ``ValueError`` for an
        unusable file, with nothing imported. The caches are reloaded and the views told through the
        usual signals.
        """
        self.check_writable()
        summary = import_annotations(
            self.store,
            path,
            crowd_as_instances=crowd_as_instances,
            class_table=class_table,
            category=category,
        )
        self._instances.clear()
        self._reload_categories()
        self.categoriesChanged.emit()
        before = {image.id: image for image in self._images}
        stored = self.store.images()
        if [image.id for image in stored] != [image.id for image in self._images]:
            self.scan()  # the file named images the list did not hold yet: the list is rebuilt
            # The rebuilt list redraws every row; the images shown already must also redraw their instances.
            changed = [image.id for image in self._images if image.id in before and before[image.id] != image]
        else:  # only the images the import changed are announced, so the views keep their place
            changed = [new.id for old, new in zip(self._images, stored, strict=True) if new != old]
            self._images = stored
        for image_id in changed:
            self.imageChanged.emit(image_id)
            self.instancesChanged.emit(image_id)
        if self._current < 0:
            self.restore_current_image()
        return summary

    def export_coco(
        self,
        path: Path,
        *,
        segmentation: ExportFormat = "rle",
        only: ExportOnly | None = None,
    ) -> ExportSummary:
        """Write the project's annotations (the truth rule's) as a COCO file; see
        :func:`app.project.coco_io.export_coco` for ``segmentation`` and ``only``.

        A path that cannot be written, or one inside the project's own folder (wherever it lives: it holds
        the project's database), is refused with a one-line ``ValueError`` before anything is written."""
        path = check_output_file(path, flag="Export to", project_dir=self.project_dir)
        return export_coco(self.store, path, segmentation=segmentation, only=only)

    def export_folder(
        self, path: Path, folder_format: FolderFormat, *, only: ExportOnly | None = None
    ) -> YoloExportSummary | LabelExportSummary:
        """Write the project's annotations into a new or empty folder as a YOLO dataset or label images
        (:func:`app.project.folder_exports.export_folder`), refused in one line as :meth:`export_coco`
        refuses a path."""
        path = check_output_dir(path, flag="Export to", project_dir=self.project_dir)
        return export_folder(self.store, path, folder_format, only=only)

    def images(self) -> list[ImageRecord]:
        """All images in browser order (by file name)."""
        return self._images

    def trainable_images(self, statuses: Sequence[ImageStatus]) -> list[ImageRecord]:
        """The images with one of ``statuses`` that a training set may take (the training set's rule)."""
        return eligible_images(self.store, statuses)

    def image(self, image_id: int) -> ImageRecord:
        return self._images[self._row_of[image_id]]

    def row_of(self, image_id: int) -> int:
        return self._row_of[image_id]

    @property
    def project_dir(self) -> Path:
        """The project's own folder (``FOLDER/.maskrcnn-studio`` unless the user chose another place)."""
        return self.store.db_path.parent

    def view_pyramid_folder(self, image_id: int) -> Path:
        """Where the view pyramid of a large image is cached, in the project's folder."""
        return pyramid_folder(self.project_dir, self.image_path(image_id))

    def image_path(self, image_id: int) -> Path:
        return self.folder / self.image(image_id).file_name

    def image_error(self, image_id: int) -> str | None:
        """Why the image cannot be used, or ``None``."""
        return self._runtime_errors.get(image_id) or self.image(image_id).error

    def set_image_error(self, image_id: int, error: str) -> None:
        """Mark the file unusable (unreadable, corrupt, too large); stored so that reopening shows it."""
        if self.image(image_id).error == error:
            return
        if self.read_only:  # true now, shown now; the project file is not written
            self._runtime_errors[image_id] = error
            self.imageChanged.emit(image_id)
            return
        try:
            self.store.set_image_info(image_id, error=error)
        except StoreError:  # the file is busy or damaged: true now, shown now, stored when next found
            self._runtime_errors[image_id] = error
            self.imageChanged.emit(image_id)
            return
        self._refresh_image(image_id)

    def set_image_size(self, image_id: int, size: tuple[int, int]) -> None:
        """Record the ``(H, W)`` read from the file (clears an earlier error)."""
        image = self.image(image_id)
        if (image.height, image.width) == tuple(size) and image.error is None or self.read_only:
            return
        try:
            self.store.set_image_info(image_id, size=size)
        except StoreError:  # the file is busy or damaged: the size is read again with the image next time
            return
        self._refresh_image(image_id)

    def set_verified(self, image_id: int, verified: bool) -> None:
        self.check_writable()
        self.store.set_verified(image_id, verified)
        self._refresh_image(image_id)

    # ------------------------------------------------------------------------------------ current image
    @property
    def current_image_id(self) -> int:
        return self._current

    def set_current_image(self, image_id: int) -> None:
        """Show ``image_id``; remembered in the project so that reopening comes back to it."""
        if image_id == self._current:
            return
        self._current = image_id
        with suppress(StoreError):  # where the user was is a convenience: a busy file must not stop the view
            self.settings.last_image_id = image_id
        self.currentImageChanged.emit(image_id)

    def restore_current_image(self) -> None:
        """Go to the image viewed last time, or the first image."""
        last = self.settings.last_image_id
        if last in self._row_of:
            self.set_current_image(last)
        elif self._images:
            self.set_current_image(self._images[0].id)

    # ------------------------------------------------------------------------------------------ categories
    def categories(self) -> list[CategoryRecord]:
        return list(self._categories.values())

    def category(self, category_id: int) -> CategoryRecord:
        return self._categories[category_id]

    def ensure_categories(self, names: Sequence[str]) -> dict[str, int]:
        """The ids of the named categories, creating the missing ones. Not an undo step, on purpose: it
        runs as a side effect of something else (a model result brings its classes, a box prompt its
        class, the first stroke in an empty project the default category), and undoing that something
        leaves the category empty, which changes no annotation. A person adding a category pushes
        :class:`~app.session.commands.AddCategory`, which is undoable."""
        self.check_writable()
        ids = self.store.ensure_categories(names)
        if any(i not in self._categories for i in ids.values()):
            self._reload_categories()
            self.categoriesChanged.emit()
        return ids

    def instance_counts(self) -> dict[int, int]:
        """Every instance per category, hidden predictions included (what deleting a category moves)."""
        return self.store.instance_counts()

    def annotation_counts(self) -> dict[int, int]:
        """The instances shown per category over the whole project: the truth rule at the current score
        threshold (one store query)."""
        return self.store.annotation_counts(self._score_threshold)

    def update_category(self, category_id: int, *, name: str | None = None, color: str | None = None) -> None:
        self.check_writable()
        self.store.update_category(category_id, name=name, color=color)
        self._categories_edited({})

    def delete_category(self, category_id: int, reassign_to: int | None) -> dict[int, list[int]]:
        """Delete a category, its instances going to ``reassign_to``; returns what moved (for undo)."""
        self.check_writable()
        moved = self.store.delete_category(category_id, reassign_to)
        self._categories_edited(moved)
        return moved

    def restore_category(self, category: CategoryRecord, moved: dict[int, list[int]]) -> None:
        self.check_writable()
        self.store.restore_category(category, moved)
        self._categories_edited(moved)

    def _categories_edited(self, images: dict[int, list[int]]) -> None:
        self._reload_categories()
        for image_id in images:
            self._instances.pop(image_id, None)
            self._refresh_image(image_id)
        self.categoriesChanged.emit()
        for image_id in images:
            self.instancesChanged.emit(image_id)

    def _reload_categories(self) -> None:
        self._categories = {c.id: c for c in self.store.categories()}

    # ------------------------------------------------------------------------------------------- instances
    def instances(self, image_id: int) -> list[InstanceRecord]:
        """Every instance of the image, hidden low-score predictions included."""
        if image_id not in self._instances:
            self._instances[image_id] = self.store.instances(image_id)
        return self._instances[image_id]

    def image_uncertainties(self) -> dict[int, ImageUncertainty]:
        """``{image_id: the uncertainty of the model that segmented it}`` (the review queue's order)."""
        if self._uncertainties is None:
            self._uncertainties = self.store.image_uncertainties()
        return self._uncertainties

    def image_uncertainty(self, image_id: int) -> ImageUncertainty | None:
        return self.image_uncertainties().get(image_id)

    def instance_uncertainties(self, image_id: int) -> dict[int, float]:
        """``{instance_id: uncertainty}`` of the image's predictions that a model scored."""
        return self.store.instance_uncertainties(image_id)

    def visible_instances(self, image_id: int) -> list[InstanceRecord]:
        """What is shown and exported: a person's instances, predictions scoring at least the threshold
        (the image's annotations), and its crowd regions (shown apart, never annotations)."""
        threshold = self._score_threshold
        return [
            r for r in self.instances(image_id) if counts_as_annotation(r, threshold) or is_crowd_region(r)
        ]

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    def set_score_threshold(self, value: float) -> None:
        """Re-filter the shown predictions; the model does not run again (predictions are stored down to
        the model's own low threshold)."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"the score threshold must be in [0, 1], got {value}")
        if value == self._score_threshold:
            return
        self._score_threshold = value
        with suppress(StoreError):  # a busy file: the view uses it now, the project keeps the last stored one
            self.settings.score_threshold = value
        self.scoreThresholdChanged.emit(value)

    def apply_edit(
        self,
        image_id: int,
        *,
        add: Sequence[NewInstance] = (),
        restore: Sequence[InstanceRecord] = (),
        update: Sequence[InstanceRecord] = (),
        delete: Sequence[int] = (),
        verified: bool | None = None,
    ) -> list[int]:
        """A person's edit, committed to the store before it is shown (see ``ProjectStore.apply_edit``).

        ``verified`` (when not ``None``) also marks the whole image verified or not, in the same transaction.
        """
        self.check_writable()
        with self.store.transaction():
            new_ids = self.store.apply_edit(image_id, add=add, restore=restore, update=update, delete=delete)
            if verified is not None:
                self.store.set_verified(image_id, verified)
        self._instances.pop(image_id, None)
        self._refresh_image(image_id)
        self.instancesChanged.emit(image_id)
        return new_ids

    def _store_busy(self, message: str) -> None:
        self.storeBusy.emit(message)

    def _store_written(self, error: str | None) -> None:
        if error is None:
            self.saved.emit()
        else:
            self.saveFailed.emit(error)

    def apply_result(
        self, result: ImageResult, *, expected_revision: int, model_version_id: int | None
    ) -> ApplyOutcome:
        """Store a model result for one image, unless a person edited the image since the run started
        (the rule is :func:`app.project.model_results.apply_model_result`)."""
        self.check_writable()
        categories = set(self._categories)
        outcome = apply_model_result(
            self.store, result, expected_revision=expected_revision, model_version_id=model_version_id
        )
        image_id = result.image_id
        if outcome.applied:
            self._instances.pop(image_id, None)
            if self._uncertainties is not None:  # what apply_model_result stored with the predictions
                if result.uncertainty is None:
                    self._uncertainties.pop(image_id, None)
                else:
                    self._uncertainties[image_id] = result.uncertainty
            self._reload_categories()
            if set(self._categories) != categories:
                self.categoriesChanged.emit()
        self._refresh_image(image_id)
        if outcome.applied:
            self.instancesChanged.emit(image_id)
        return outcome

    def images_to_segment(self) -> tuple[list[ImageRecord], int]:
        """The images "Auto-segment all" runs on: new or predicted ones without an error.

        Corrected and verified images are a person's work and are skipped (returned as a count), so a
        run over the folder can never bring back a prediction that someone deleted.
        """
        todo, skipped = [], 0
        for image in self._images:
            if self.image_error(image.id):
                continue
            if needs_segmentation(image):
                todo.append(image)
            else:
                skipped += 1
        return todo, skipped

    def _refresh_image(self, image_id: int) -> None:
        self._images[self._row_of[image_id]] = self.store.image(image_id)
        self.imageChanged.emit(image_id)
