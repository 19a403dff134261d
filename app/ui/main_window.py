"""The main window: composition and wiring only.

It builds the views once, and per opened folder the document (over the project store), the image
browser's model, the canvas presenter and the segmentation controller (which owns the inference thread).
The behaviour lives in those parts; this file connects their signals and the menus.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import shiboken6
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QToolBar,
    QWidget,
)

from app.project.coco_io import ImportSummary, is_cvat_crowd_path
from app.project.label_image_io import CLASS_TABLE, needs_a_category
from app.project.model_sources import bundled_demo_model
from app.project.recent import (
    add_recent_folder,
    drop_missing_folders,
    recent_folders,
    reopen_last_folder,
    set_reopen_last_folder,
)
from app.project.records import ImageStatus
from app.project.settings import COLOUR_BY_CATEGORY, COLOUR_BY_INSTANCE, ProjectSettings
from app.project.yolo_io import is_yolo_folder
from app.session.document import Document
from app.session.editor import Editor
from app.session.finetune import FinetuneController
from app.session.model_description import ModelDescription, describe_model
from app.session.model_registry import ModelRegistry
from app.session.presenter import CanvasPresenter
from app.session.review import ReviewQueue
from app.session.segmentation import SegmentationController
from app.ui.actions import EditActions, install_tools
from app.ui.canvas.view import HIDE_OVERLAYS_HELD_KEY, Canvas
from app.ui.category_editing import CategoryEditing
from app.ui.cpu_inference_menu import build_cpu_inference_menu
from app.ui.dialogs import ask_crowd_as_instances, choose_model, show_about, show_shortcuts
from app.ui.export_dialog import ExportChoices, ask_export
from app.ui.finetune_dialog import FinetuneDialog
from app.ui.get_models_dialog import GetModelsDialog
from app.ui.instance_menu import show_instance_menu
from app.ui.interpreter import configure_for_gui, freeze_long_lived_heap
from app.ui.panels.category_panel import CategoryDock, CategoryPanel
from app.ui.panels.elided_label import ElidedLabel
from app.ui.panels.image_browser import ImageBrowser, ImageListModel, ImagePanel
from app.ui.panels.instance_list import InstanceList
from app.ui.panels.model_versions import ModelVersionsPanel, version_rows
from app.ui.panels.run_progress import RunProgress
from app.ui.panels.save_indicator import SaveIndicator
from app.ui.panels.start_page import StartPage
from app.ui.panels.training_panel import TrainingPanel
from app.ui.panels.view_controls import ViewControls
from app.ui.project_opener import open_project, repair_and_open
from app.workers.image_loader import ImageLoader
from app.workers.inference import LoadedModel, PredictorFactory, checkpoint_factory
from maskrcnn_core.paths import one_line_error

APP_NAME = "Mask R-CNN Studio"
MODEL_LABEL_MAX_CHARS = 40  # the status bar's model label, elided past this (its tooltip has it all)
# Shown while a damaged project file is looked at read-only (its readable copy), with the way out.
READ_ONLY_NOTICE = "read-only: the project file is damaged — File ▸ Repair project…"


class MainWindow(QMainWindow):
    """``predictor_factory(source)`` turns a checkpoint path into a factory run in the worker thread;
    tests inject one that builds a fake predictor."""

    def __init__(self, predictor_factory: Callable[[str], PredictorFactory] = checkpoint_factory) -> None:
        super().__init__()
        configure_for_gui()
        self._predictor_factory = predictor_factory
        self.setWindowTitle(APP_NAME)
        self.resize(1280, 800)
        self.document: Document | None = None
        self.presenter: CanvasPresenter | None = None
        self.review: ReviewQueue | None = None
        self.registry: ModelRegistry | None = None
        self.segmentation: SegmentationController | None = None
        self.browser: ImageBrowser | None = None
        self.loader: ImageLoader | None = None
        self.editor: Editor | None = None
        self.undo_stack = QUndoStack(self)
        self.edit_actions = EditActions(self)
        self.canvas = Canvas()
        self.canvas.set_message("Open a folder of images: File ▸ Open Folder…")
        self.setCentralWidget(self.canvas)
        self.instance_list = InstanceList()
        self.category_panel = CategoryPanel()
        self.instance_list.instanceSelected.connect(self.canvas.select_instance)
        self.canvas.instanceClicked.connect(self.instance_list.select)  # a click with no tool active
        self.canvas.instanceClicked.connect(self.canvas.select_instance)
        self.canvas.instanceMenuRequested.connect(self._show_instance_menu)
        self.browser_dock = self._dock(
            "Images", QLabel("No folder open"), Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self._dock("Instances", self.instance_list, Qt.DockWidgetArea.RightDockWidgetArea)
        self.category_dock = CategoryDock(self.category_panel)
        self._dock("Categories", self.category_dock, Qt.DockWidgetArea.RightDockWidgetArea)
        self.finetune: FinetuneController | None = None
        self.training_panel = TrainingPanel()
        self.versions_panel = ModelVersionsPanel()
        right = Qt.DockWidgetArea.RightDockWidgetArea
        self.training_dock = self._dock("Training", self.training_panel, right)
        versions_dock = self._dock("Model versions", self.versions_panel, right)
        self.tabifyDockWidget(self.training_dock, versions_dock)
        self._wire_finetune_views()
        self.view_controls = ViewControls()
        self.view_controls.set_opacity(self.canvas.opacity)
        self.view_controls.opacityChanged.connect(self._set_opacity)
        toolbar = QToolBar("View")
        toolbar.setObjectName("view-toolbar")
        toolbar.addWidget(self.view_controls)
        self.addToolBar(toolbar)
        self.run_progress = RunProgress()
        self.device_label = QLabel("Device: –")
        # Elided, whole in its tooltip: the status bar's messages (where an export went) need the room.
        self.model_label = ElidedLabel("Model: none", max_chars=MODEL_LABEL_MAX_CHARS)
        for widget in (self.run_progress, self.device_label, self.model_label):
            self.statusBar().addPermanentWidget(widget)
        # The demo model knows only synthetic shapes: one click to a real one.
        self.get_models_button = QPushButton("Get models…")
        self.get_models_button.setFlat(True)
        self.get_models_button.setToolTip("The demo model knows only synthetic shapes: get a real model")
        self.get_models_button.clicked.connect(self.get_models)
        self.get_models_button.hide()
        self.statusBar().addPermanentWidget(self.get_models_button)
        self.save_indicator = SaveIndicator()
        self.statusBar().addPermanentWidget(self.save_indicator)
        self.read_only_label = QLabel(READ_ONLY_NOTICE)  # in the save indicator's place: nothing is saved
        self.read_only_label.hide()
        self.statusBar().addPermanentWidget(self.read_only_label)
        self._build_menus()
        self._set_project_actions_enabled(False)

    # ------------------------------------------------------------------------------------------ project
    def open_folder(self, folder: str | Path, *, weights: str | None = None) -> bool:
        """Open ``folder``'s project (closing the current one) and restore where the user left off."""
        folder = Path(folder).resolve()
        if self.document is not None and Path(self.document.folder).resolve() == folder:
            # This window holds the project's lock: opening it again would be refused as "in use".
            self.statusBar().showMessage(f"{folder.name} is already open", 10_000)
            return True
        document = open_project(self, folder)
        if document is None:
            return False
        self._show_document(folder, document, weights=weights)
        return True

    def _show_document(self, folder: Path, document: Document, *, weights: str | None = None) -> None:
        """Make ``document`` (``folder``'s project) the window's, closing the current one."""
        self.close_project()
        # Everything that belongs to this project is a child of its document, so closing deletes it all
        # at once, together with any queued signal still on its way to it.
        self.document = document
        self.loader = ImageLoader(document)
        self.browser = ImageBrowser(ImageListModel(document, self.loader, document))
        self.image_panel = ImagePanel(self.browser, document.settings.image_filter)
        self.image_panel.filterChanged.connect(
            lambda key: document.settings.write(ProjectSettings.image_filter, key)  # kept per project
        )
        self.browser_dock.setWidget(self.image_panel)
        self.presenter = CanvasPresenter(
            document, self.loader, self.canvas, self.instance_list, self.category_panel
        )
        self.review = ReviewQueue(document)
        self.colour_by_category_action.setChecked(document.settings.overlay_colour == COLOUR_BY_CATEGORY)
        self.registry = document.models
        self.registry.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.presenter.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        self.presenter.overviewShown.connect(self.browser.source.set_thumbnail_from_overview)
        document.storeBusy.connect(self._show_store_busy)
        document.storeBusy.connect(self.save_indicator.show_saving)
        document.saved.connect(lambda: self.save_indicator.show_saved(datetime.now()))
        document.saveFailed.connect(self.save_indicator.show_failed)
        self.save_indicator.show_saved()
        self.registry.activeChanged.connect(lambda m: self.model_label.setText(f"Model: loading {m.name}…"))
        self.segmentation = SegmentationController(document, self.registry, self._predictor_factory, document)
        self.editor = self._build_editor(document, self.segmentation)
        self._wire_project(document, self.segmentation, self.browser)
        self.finetune = self._build_finetune(document, self.registry, self.segmentation)
        self.view_controls.set_score_threshold(document.score_threshold)
        self.canvas.set_opacity(document.settings.overlay_opacity)
        self.view_controls.set_opacity(self.canvas.opacity)
        document.scan()
        document.restore_current_image()
        self.setWindowTitle(f"{folder.name} — {APP_NAME}")
        add_recent_folder(folder)
        self._rebuild_recent_menu()
        self._set_project_actions_enabled(True)
        self.registry.restore(weights=weights, fallback=_default_model())
        if document.read_only:
            self.setWindowTitle(f"{folder.name} ({READ_ONLY_NOTICE}) — {APP_NAME}")

    def repair_open_project(self) -> None:
        """File ▸ Repair project…: close the read-only look at a damaged project file, repair the file
        (what SQLite can still read is kept, the damaged file stays beside it) and open the project."""
        document = self.document
        if document is None or document.damaged_project_dir is None:
            return
        folder, project_dir = Path(document.folder), document.damaged_project_dir
        self.close_project()
        repaired = repair_and_open(self, folder, project_dir)
        if repaired is not None:
            self._show_document(folder, repaired)

    def _show_store_busy(self, text: str) -> None:
        # The GUI thread is inside the store's wait for the file's lock: paint the line now, not later.
        self.statusBar().showMessage(text, 10_000)
        self.statusBar().repaint()

    def close_project(self) -> None:
        """Stop the worker and release the project (everything is already saved)."""
        if self.document is None:
            return
        self.edit_actions.set_editor(None)
        self.category_dock.set_enabled(False)
        # the workers come and go with the document; the training run saves its last checkpoint (resume is
        # offered on reopen)
        if self.finetune is not None:
            self.finetune.shutdown()
        if self.segmentation is not None:
            self.segmentation.shutdown()
        if self.loader is not None:
            self.loader.wait()
        if self.presenter is not None:
            self.presenter.shutdown()
        self.document.close()
        shiboken6.delete(self.document)  # now, not later: no queued result may reach a closed store
        self.document = self.registry = self.segmentation = self.loader = self.editor = self.finetune = None
        self.presenter = self.review = None
        self.training_panel.reset()
        self.versions_panel.show_versions([])
        self.browser = None
        self.show_start_page()
        self.undo_stack.clear()
        self.canvas.set_message("Open a folder of images: File ▸ Open Folder…")
        self.instance_list.clear()
        self.category_panel.clear()
        self.save_indicator.clear()
        self._set_project_actions_enabled(False)
        self._show_model_description(None)

    def start_without_folder(self) -> None:
        """Started with no folder: reopen the last one (File ▸ Reopen the last folder on start), else show
        the start page, which offers it. Recent folders that no longer exist are forgotten, in one line."""
        missing = drop_missing_folders()
        recent = recent_folders()
        if not (recent and reopen_last_folder() and self.open_folder(recent[0])):
            self.show_start_page()
        if missing:  # said last, so that opening the folder does not cover it
            self._rebuild_recent_menu()
            names = ", ".join(str(f) for f in missing)
            self.statusBar().showMessage(
                f"Forgot {len(missing)} recent folder(s) that no longer exist: {names}", 15_000
            )

    def show_start_page(self) -> None:
        """The Images dock while no folder is open: Open Folder… and the last folder, one click each."""
        recent = recent_folders()
        self.start_page = StartPage(recent[0] if recent else None)
        self.start_page.openFolderRequested.connect(self.choose_and_open_folder)
        self.start_page.openLastRequested.connect(self.open_folder)
        self.browser_dock.setWidget(self.start_page)

    def get_models(self) -> None:
        """Model ▸ Get models…, from the demo model's notice: a real model instead of synthetic shapes."""
        action = getattr(self, "get_models_action", None)
        if action is None:
            self.statusBar().showMessage("Get models… is not available: Model ▸ Load weights…", 10_000)
            return
        action.trigger()

    def load_model(self, source: str) -> None:
        """Model ▸ Load weights: make a checkpoint file the active model (a version of the project once it
        has loaded)."""
        if self.registry is None:
            return
        try:
            self.registry.activate_file(source)
        except ValueError as exc:
            self.statusBar().showMessage(f"{exc} — Model ▸ Load weights…", 10_000)

    def activate_version(self, version_id: int) -> None:
        """The versions panel's Activate: make one of the project's versions the active model."""
        if self.registry is None:
            return
        try:
            self.registry.activate(version_id)
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 10_000)

    # ------------------------------------------------------------------------------------------ actions
    def auto_segment_image(self) -> None:
        doc, segmentation = self.document, self.segmentation
        if doc is None or segmentation is None or doc.current_image_id < 0 or not self._model_ready():
            return
        error = doc.image_error(doc.current_image_id)
        if error:
            self.statusBar().showMessage(error, 10_000)
            return
        segmentation.segment([doc.current_image_id])

    def auto_segment_all(self) -> None:
        segmentation = self.segmentation
        if self.document is None or segmentation is None or not self._model_ready():
            return
        todo, skipped = self.document.images_to_segment()
        batch = 4 if segmentation.model and segmentation.model.device.startswith("cuda") else 2
        segmentation.segment([image.id for image in todo], batch_size=batch)
        if skipped:
            self.statusBar().showMessage(f"Skipping {skipped} image(s) you corrected or verified", 10_000)

    def show_get_models_dialog(self) -> None:
        """Model ▸ Get models…: download a pretrained model; once downloaded it becomes the active model of
        the open project."""
        # open(), not exec(): window-modal without a nested event loop, so nothing waits on the dialog
        dialog = GetModelsDialog(self.registry, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    def choose_and_load_model(self) -> None:
        source = choose_model(self)
        if source:
            self.load_model(source)

    def choose_and_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", str(Path.home()))
        if folder:
            self.open_folder(folder)

    def import_coco_file(self) -> None:
        if self.document is None:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Import COCO or labelme", str(self.document.folder), "COCO or labelme JSON (*.json)"
        )
        if not path:
            return
        crowd_as_instances = False
        if is_cvat_crowd_path(Path(path)):
            answer = ask_crowd_as_instances(self, Path(path).name)
            if answer is None:
                return
            crowd_as_instances = answer
        try:
            summary = self.import_annotation_file(Path(path), crowd_as_instances=crowd_as_instances)
        except ValueError as exc:
            QMessageBox.critical(self, "Import COCO", str(exc))
            return
        QMessageBox.information(
            self, "Import COCO", f"{summary.headline().capitalize()}.\n\n{summary.report}"
        )

    def import_folder(self) -> None:
        """File ▸ Import folder…: a YOLO dataset, label images or labelme files; label images without a
        class table ask for one category for all."""
        if self.document is None:
            return
        chosen = QFileDialog.getExistingDirectory(
            self, "Import a YOLO dataset, label images or labelme files", str(self.document.folder)
        )
        if not chosen:
            return
        folder, category = Path(chosen), None
        if not is_yolo_folder(folder) and needs_a_category(folder):
            category, ok = QInputDialog.getText(
                self,
                "Import label images",
                f"{folder.name} has no class table ({CLASS_TABLE}).\nThe category of every instance:",
            )
            if not ok or not category.strip():
                return
        try:
            summary = self.document.import_annotations(folder, category=category)
        except ValueError as exc:
            QMessageBox.critical(self, "Import folder", one_line_error(exc))
            return
        QMessageBox.information(
            self, "Import folder", f"{summary.headline().capitalize()}.\n\n{summary.report}"
        )

    def import_annotation_file(self, path: Path, *, crowd_as_instances: bool = False) -> ImportSummary:
        """Import a COCO or labelme file into the open project (the document's import, which keeps the
        views right); what the menu item does, without its dialogs (``crowd_as_instances``: the answer to
        the question about a CVAT-style file). Raises ``ValueError`` (nothing imported) for a bad file or
        when no project is open."""
        if self.document is None:
            raise ValueError("No project is open: open a project folder first")
        return self.document.import_annotations(path, crowd_as_instances=crowd_as_instances)

    def export_coco_file(self) -> None:
        if self.document is None:
            return
        settings = self.document.settings
        last = settings.export_path
        defaults = ExportChoices(
            Path(last) if last else self.document.folder / "annotations.json",
            settings.export_format,
            settings.export_images,
        )
        choices = ask_export(defaults, self)
        if choices is None:
            return
        try:
            if choices.folder_format is not None:
                written = self.document.export_folder(choices.path, choices.folder_format, only=choices.only)
                done = f"Exported: {written.headline()} in {choices.path}"
            else:
                summary = self.document.export_coco(
                    choices.path, segmentation=choices.segmentation, only=choices.only
                )
                done = f"Exported {summary.annotations} annotations on {summary.images} images to "
                done += str(choices.path)
        except (ValueError, OSError) as exc:
            QMessageBox.critical(self, "Export", one_line_error(exc))
            return
        settings.export_path = str(choices.path)
        settings.export_format = choices.format
        settings.export_images = choices.images
        self.statusBar().showMessage(done, 10_000)

    def step_image(self, step: int) -> None:
        doc = self.document
        if doc is None or not doc.images():
            return
        row = doc.row_of(doc.current_image_id) if doc.current_image_id >= 0 else -1
        row = min(max(row + step, 0), len(doc.images()) - 1)
        doc.set_current_image(doc.images()[row].id)

    def review_next(self) -> None:
        """Go to the most uncertain image not yet corrected or verified (the review queue's pick)."""
        if self.document is None or self.review is None:
            return
        image_id = self.review.next_image()
        if image_id is None:
            self.statusBar().showMessage(
                "Nothing left to review: every image a model scored is corrected or verified", 10_000
            )
            return
        self.document.set_current_image(image_id)
        uncertainty = self.document.image_uncertainty(image_id)
        if uncertainty is not None:
            self.statusBar().showMessage(
                f"Review: uncertainty {uncertainty.score:.2f} ({uncertainty.reason})", 10_000
            )

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self.close_project()
        super().closeEvent(event)

    # ------------------------------------------------------------------------------------------- wiring
    def _wire_project(self, doc: Document, seg: SegmentationController, browser: ImageBrowser) -> None:
        browser.imageSelected.connect(doc.set_current_image)
        self.view_controls.scoreThresholdChanged.connect(doc.set_score_threshold)
        seg.busyChanged.connect(self.run_progress.set_busy)
        seg.progressChanged.connect(self.run_progress.set_progress)
        seg.tileProgressChanged.connect(self.run_progress.set_tile_progress)
        seg.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        seg.modelChanged.connect(self._show_model)
        seg.modelFailed.connect(lambda _e: self._show_model_description(None))
        seg.modelFailed.connect(lambda _e: self.model_label.setText("Model: none (failed to load)"))

    def _build_editor(self, document: Document, segmentation: SegmentationController) -> Editor:
        """The editing tools of this project (a child of its document), bound to the menus and views."""
        editor = Editor(document, self.undo_stack, self.canvas)
        install_tools(editor, self.canvas, segmentation)
        editor.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        editor.brushSizeChanged.connect(lambda d: self.statusBar().showMessage(f"Brush: {d} px", 3_000))
        editor.selectionChanged.connect(self._select_first_in_list)
        self.instance_list.instanceSelected.connect(editor.select_one)  # disconnected when it is deleted
        self.canvas.brushWheel.connect(editor.grow_brush)
        self.edit_actions.set_editor(editor)
        self.category_editing = CategoryEditing(editor, self.category_dock, segmentation, self)
        return editor

    # --------------------------------------------------------------------------------------- fine-tuning
    def start_finetune(self) -> None:
        """Model ▸ Fine-tune…: ask for the settings, then start the run (it trains in its own process)."""
        if self.finetune is None or self.document is None:
            return
        if self.finetune.running:
            self.statusBar().showMessage("A fine-tuning run is going: see the Training panel", 10_000)
            return
        statuses = (ImageStatus.VERIFIED, ImageStatus.CORRECTED)
        images = {s: [im.file_name for im in self.document.trainable_images((s,))] for s in statuses}
        active = self.registry.active_id if self.registry else None
        finetune = self.finetune
        model = self.segmentation.model if self.segmentation is not None else None
        gpu = model is not None and model.device.startswith("cuda")  # where the worker built the model
        dialog = FinetuneDialog(
            finetune.base_candidates(),
            active,
            images,
            self,
            tier=finetune.last_tier,
            gpu_available=gpu,
            estimate=lambda settings, n: finetune.estimate(settings, gpu_available=gpu, num_train_images=n),
            own_truth_share=finetune.own_truth_share,
        )
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        try:
            self.finetune.start(dialog.settings(), gpu_available=gpu)
        except (ValueError, RuntimeError, OSError) as exc:
            QMessageBox.warning(self, "Fine-tune", str(exc))

    def _wire_finetune_views(self) -> None:
        panel = self.training_panel
        panel.cancelRequested.connect(self._cancel_finetune)
        panel.resumeRequested.connect(self._resume_finetune)
        panel.useNewRequested.connect(self._use_new_version)
        panel.resegmentRequested.connect(self.auto_segment_all)
        self.versions_panel.activateRequested.connect(self.activate_version)

    def _cancel_finetune(self) -> None:
        if self.finetune is not None:
            self.finetune.cancel()

    def _resume_finetune(self) -> None:
        if self.finetune is not None:
            self.finetune.resume()

    def _use_new_version(self) -> None:
        if self.finetune is not None:
            self.finetune.use_new_version()

    def _select_first_in_list(self, instance_ids: list[int]) -> None:
        """The instance list follows the canvas selection (its first instance)."""
        if instance_ids:
            self.instance_list.select(instance_ids[0])

    def _build_finetune(
        self, document: Document, registry: ModelRegistry, seg: SegmentationController
    ) -> FinetuneController:
        """The fine-tuning controller of this project (a child of its document), wired to the docks."""
        finetune = FinetuneController(document, registry, document)
        panel = self.training_panel
        finetune.runStarted.connect(panel.show_run_started)
        finetune.runStarted.connect(lambda _info: self.training_dock.raise_())
        finetune.trainingEvent.connect(panel.show_event)
        finetune.runEnded.connect(panel.show_run_ended)
        finetune.comparisonReady.connect(panel.show_comparison)
        finetune.resumableChanged.connect(panel.set_resumable)
        finetune.message.connect(lambda text: self.statusBar().showMessage(text, 10_000))
        registry.versionsChanged.connect(self._show_versions)
        seg.modelChanged.connect(
            lambda m: panel.set_active_model(m.info.name, finetune.is_new_version(seg.model_version_id))
        )
        if finetune.past_run is not None:  # the project's last run, as it was left
            panel.show_past_run(finetune.past_run)
        panel.set_resumable(finetune.can_resume())
        self._show_versions()
        return finetune

    def _show_versions(self) -> None:
        registry = self.registry
        if registry is None:
            return
        rows = version_rows(registry.versions(), registry.runs(), registry.active_id)
        self.versions_panel.show_versions(rows)

    def _reload_model(self) -> None:
        """The CPU inference choice changed: build the active model again with it."""
        if self.segmentation is not None:
            self.segmentation.reload_model()

    def _show_model(self, model: LoadedModel) -> None:
        freeze_long_lived_heap()  # torch and the model are in memory now, for good
        gpu = model.device.startswith("cuda")
        where = model.runs_on or f"{'GPU' if gpu else 'CPU'} ({model.device})"
        self.device_label.setText(f"Device: {where}")
        self._show_model_description(describe_model(model.info))

    def _show_model_description(self, description: ModelDescription | None) -> None:
        """What the active model knows, in the status bar (tooltip: the details) and the Model menu."""
        self.model_label.setText(description.status_text if description else "Model: none")
        self.model_label.setToolTip(description.details if description else "")
        self.get_models_button.setVisible(description is not None and description.is_demo)
        menu = self.model_about_menu
        menu.clear()
        menu.setTitle(f"Active model: {description.headline if description else 'none'}")
        menu.setEnabled(description is not None)
        if description is None:
            return
        for line in description.details.splitlines()[1:]:
            menu.addAction(line).setEnabled(False)
        if description.is_demo:
            menu.addSeparator()
            menu.addAction("Get models…").triggered.connect(self.get_models)

    def _model_ready(self) -> bool:
        if self.segmentation is not None and self.segmentation.model is not None:
            return True
        segmentation = self.segmentation
        reason = segmentation.no_model_reason() if segmentation is not None else "no project is open"
        self.statusBar().showMessage(f"Auto-segment: {reason}", 10_000)
        return False

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title.lower()}-dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(
        self,
        menu,  # noqa: ANN001
        text: str,
        slot,  # noqa: ANN001
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = menu.addAction(text)
        if slot is not None:
            action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open Folder…", self.choose_and_open_folder, QKeySequence.StandardKey.Open)
        self.recent_menu = file.addMenu("Recent folders")
        self._rebuild_recent_menu()
        self.reopen_last_action = file.addAction("Reopen the last folder on start")
        self.reopen_last_action.setCheckable(True)
        self.reopen_last_action.setChecked(reopen_last_folder())
        self.reopen_last_action.toggled.connect(set_reopen_last_folder)
        file.addSeparator()
        self.import_action = self._action(file, "&Import COCO…", self.import_coco_file, "Ctrl+I")
        self.import_folder_action = self._action(
            file, "Import &folder (YOLO, label images, labelme)…", self.import_folder
        )
        self.export_action = self._action(file, "&Export…", self.export_coco_file, "Ctrl+E")
        self.repair_action = self._action(file, "&Repair project…", self.repair_open_project)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        # Both common redo keys on every platform (the platform's own may be only one of them), each once:
        # a key listed twice is an "ambiguous shortcut" to Qt, which then runs neither.
        redo.setShortcuts(_unique_keys([QKeySequence.StandardKey.Redo, "Ctrl+Shift+Z", "Ctrl+Y"]))
        edit.addActions([undo, redo])
        self.addActions([undo, redo])  # listed under Help ▸ Keyboard shortcuts with the others
        tools_toolbar = QToolBar("Tools")
        tools_toolbar.setObjectName("tools-toolbar")
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, tools_toolbar)
        self.edit_actions.populate(edit, bar.addMenu("&Tools"), tools_toolbar)

        view = bar.addMenu("&View")
        self._action(view, "Zoom &in", self.canvas.zoom_in, QKeySequence.StandardKey.ZoomIn).setShortcuts(
            [QKeySequence(QKeySequence.StandardKey.ZoomIn), QKeySequence("+"), QKeySequence("=")]
        )
        self._action(view, "Zoom &out", self.canvas.zoom_out, QKeySequence.StandardKey.ZoomOut).setShortcuts(
            [QKeySequence(QKeySequence.StandardKey.ZoomOut), QKeySequence("-")]
        )
        self._action(view, "&Fit image", self.canvas.fit, "Ctrl+0")
        view.addSeparator()
        self._action(view, "More overlay opacity", lambda: self._nudge_opacity(0.1), "O")
        self._action(view, "Less overlay opacity", lambda: self._nudge_opacity(-0.1), "Shift+O")
        view.addSeparator()
        for text, attr, setter, key in (
            ("Show &boxes", "show_boxes", self.canvas.set_show_boxes, "Shift+B"),
            ("Show category &names", "show_category_names", self.canvas.set_show_category_names, "Shift+L"),
            ("Show &scores", "show_scores", self.canvas.set_show_scores, "Shift+S"),
        ):
            action = self._action(view, text, None, key)
            action.setCheckable(True)
            action.setChecked(getattr(self.canvas, attr))
            action.toggled.connect(setter)
        self.colour_by_category_action = self._action(view, "&Colour by category", None)
        self.colour_by_category_action.setCheckable(True)
        self.colour_by_category_action.toggled.connect(self._set_colour_by_category)
        self.hide_overlays_action = self._action(
            view, f"Hide all overlays (hold {HIDE_OVERLAYS_HELD_KEY} to peek)", None, "Shift+X"
        )
        self.hide_overlays_action.setCheckable(True)
        self.hide_overlays_action.toggled.connect(self.canvas.set_overlays_hidden)
        view.addSeparator()
        self._action(view, "&Next image", lambda: self.step_image(1), "PgDown")
        self._action(view, "&Previous image", lambda: self.step_image(-1), "PgUp")
        self._action(view, "&Review next (most uncertain)", self.review_next, "N")

        model = bar.addMenu("&Model")
        self.load_weights_action = self._action(model, "&Load weights…", self.choose_and_load_model, "Ctrl+L")
        self.get_models_action = self._action(model, "&Get models…", self.show_get_models_dialog)
        self.segment_image_action = self._action(
            model, "Auto-segment &image", self.auto_segment_image, "Ctrl+R"
        )
        self.segment_all_action = self._action(
            model, "Auto-segment &all", self.auto_segment_all, "Ctrl+Shift+R"
        )
        self._action(model, "&Cancel auto-segment", self._cancel, "Esc")
        model.addSeparator()
        self.finetune_action = self._action(model, "&Fine-tune…", self.start_finetune)
        model.addSeparator()
        self.cpu_inference_menu = build_cpu_inference_menu(model, self._reload_model)
        self.model_about_menu = model.addMenu("Active model: none")  # filled by _show_model_description
        self.model_about_menu.setEnabled(False)
        self.run_progress.cancelRequested.connect(self._cancel)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", lambda: show_shortcuts(self, self.actions()), "F1")
        self._action(help_menu, "&About", lambda: show_about(self))

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in recent_folders():
            self.recent_menu.addAction(str(folder)).triggered.connect(
                lambda _c=False, f=folder: self.open_folder(f)
            )
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def _set_project_actions_enabled(self, enabled: bool) -> None:
        """The one place that decides what an open project enables: everything, or for a read-only
        document (a damaged project file's readable copy) looking, exporting and the repair only."""
        read_only = enabled and self.document is not None and self.document.read_only
        for action in (
            self.import_action,
            self.import_folder_action,
            self.load_weights_action,
            self.segment_image_action,
            self.segment_all_action,
            self.finetune_action,
        ):
            action.setEnabled(enabled and not read_only)
        self.export_action.setEnabled(enabled)
        self.repair_action.setEnabled(read_only)
        self.read_only_label.setVisible(read_only)
        self.save_indicator.setVisible(not read_only)
        if read_only:  # no editing tool, no category editing: the instances can be selected and looked at
            self.edit_actions.set_editor(None)
            self.category_dock.set_enabled(False)

    def _nudge_opacity(self, delta: float) -> None:
        self._set_opacity(self.canvas.opacity + delta)

    def _set_opacity(self, opacity: float) -> None:
        """Draw the fills at ``opacity`` (clamped to [0, 1]); the project remembers it."""
        self.canvas.set_opacity(opacity)
        self.view_controls.set_opacity(self.canvas.opacity)
        if self.document is not None:
            self.document.settings.overlay_opacity = self.canvas.opacity

    def _show_instance_menu(self, instance_id: int, at: QPoint) -> None:
        if self.editor is not None:
            show_instance_menu(self.editor, self.edit_actions, instance_id, at, self)

    def _set_colour_by_category(self, on: bool) -> None:
        """Colour the instances by their category's colour, or each by its own; the project remembers it."""
        if self.document is None or self.presenter is None:
            return
        colour = COLOUR_BY_CATEGORY if on else COLOUR_BY_INSTANCE
        if self.document.settings.overlay_colour != colour:
            self.document.settings.overlay_colour = colour
        self.presenter.refresh_overlay()

    def _cancel(self) -> None:
        if self.editor is not None:
            self.editor.cancel_gesture()  # Esc also abandons a polygon being drawn
        if self.segmentation is not None:
            self.segmentation.cancel()


def _unique_keys(keys: list[QKeySequence.StandardKey | str]) -> list[QKeySequence]:
    """``keys`` in order, each key sequence once."""
    unique: dict[str, QKeySequence] = {}
    for key in keys:
        sequence = QKeySequence(key)
        unique.setdefault(sequence.toString(), sequence)
    return list(unique.values())


def _default_model() -> str | None:
    demo = bundled_demo_model()
    return str(demo) if demo is not None else None
