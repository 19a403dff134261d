"""Keeps the canvas, instance list and category panel in step with the document's current image.

The image is decoded in the loader's thread pool; its overlay is rebuilt whenever the image's instances,
the categories or the score threshold change. A file that cannot be shown leaves a message on the canvas
and an error mark in the browser, never an exception.

A large image is shown from its view pyramid (:class:`app.workers.view_tiles.LargeImageTiles`, one at a
time, closed when another image is shown): built in the background the first time, with its progress on
the canvas's status line; if the file changes on disk while it is shown, it is shown again from a new one.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from app.session.document import Document
from app.session.overlay import build_overlays
from app.session.views import CanvasView, CategoryListView, InstanceListView
from app.workers.image_loader import ImageLoader, LargeImageFile
from app.workers.view_tiles import LargeImageTiles


class CanvasPresenter(QObject):
    # one line for the status bar about the large image shown: its view being built, or why it cannot be
    message = Signal(str)
    overviewShown = Signal(int, object)  # image id, QImage: a large image's overview, now on the canvas

    def __init__(
        self,
        document: Document,
        loader: ImageLoader,
        canvas: CanvasView,
        instance_list: InstanceListView,
        category_panel: CategoryListView,
    ) -> None:
        super().__init__(document)
        self._doc = document
        self._loader = loader
        self._canvas = canvas
        self._list = instance_list
        self._panel = category_panel
        self._tiles: LargeImageTiles | None = None
        # Model results arrive one image at a time; redrawing is deferred to the next event-loop turn and
        # coalesced, so storing a result and drawing it never add up in one GUI-thread stall.
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh_overlay)
        self._categories_timer = QTimer(self)
        self._categories_timer.setSingleShot(True)
        self._categories_timer.setInterval(200)
        self._categories_timer.timeout.connect(self.refresh_categories)
        document.currentImageChanged.connect(self._show_image)
        document.instancesChanged.connect(self._instances_changed)
        document.scoreThresholdChanged.connect(lambda _v: self.refresh_overlay())
        document.categoriesChanged.connect(self.refresh_overlay)
        loader.imageLoaded.connect(self._image_loaded)
        self.refresh_categories()

    def refresh_overlay(self) -> None:
        image_id = self._doc.current_image_id
        overlays = (
            []
            if image_id < 0
            else build_overlays(
                self._doc.visible_instances(image_id),
                {c.id: c for c in self._doc.categories()},
                self._doc.settings.overlay_colour,
                self._doc.instance_uncertainties(image_id),
            )
        )
        self._canvas.set_overlays(overlays)
        self._list.set_overlays(overlays)
        self.refresh_categories()

    def refresh_categories(self) -> None:
        self._panel.set_categories(self._doc.categories(), self._doc.annotation_counts())

    def _show_image(self, image_id: int) -> None:
        self._close_tiles()
        if image_id < 0:
            self._canvas.set_message("No image")
            return
        error = self._doc.image_error(image_id)
        name = self._doc.image(image_id).file_name
        if error:
            self._canvas.set_message(f"{name}\n\n{error}")
            self.refresh_overlay()
            return
        self._canvas.set_message(f"Loading {name}…")
        self._list.set_overlays([])
        self._loader.load_image(image_id, self._doc.image_path(image_id))

    def _image_loaded(self, image_id: int, image: QImage | None, error: str) -> None:
        if image_id != self._doc.current_image_id:
            return  # the user moved on while it was decoding
        if image is None:
            self._doc.set_image_error(image_id, error)
            self._canvas.set_message(f"{self._doc.image(image_id).file_name}\n\n{error}")
            return
        if isinstance(image, LargeImageFile):
            self._show_large(image_id, image)
            return
        self._doc.set_image_size(image_id, (image.height(), image.width()))
        self._canvas.set_image(image)
        self.refresh_overlay()

    def _show_large(self, image_id: int, found: LargeImageFile) -> None:
        self._close_tiles()
        self._doc.set_image_size(image_id, found.size)
        tiles = self._tiles = LargeImageTiles(
            found.path, self._doc.view_pyramid_folder(image_id), found.size, self
        )
        name = found.path.name
        tiles.buildProgress.connect(
            lambda done, total: self.message.emit(
                f"Preparing the view of {name}: {100 * done // max(1, total)} %"
            )
        )
        tiles.pyramidReady.connect(lambda: self.message.emit(""))
        tiles.failed.connect(lambda reason: self._large_failed(image_id, reason))
        tiles.sourceChanged.connect(lambda: self._large_changed(image_id))
        tiles.overviewReady.connect(lambda overview: self.overviewShown.emit(image_id, overview))
        self._canvas.set_large_image(tiles)
        self.refresh_overlay()
        tiles.start()

    def _large_failed(self, image_id: int, reason: str) -> None:
        if image_id != self._doc.current_image_id:
            return
        self._close_tiles()
        self._canvas.set_message(f"{self._doc.image(image_id).file_name}\n\n{reason}")
        self.message.emit(reason)

    def _large_changed(self, image_id: int) -> None:
        if image_id != self._doc.current_image_id:
            return
        self.message.emit(f"{self._doc.image(image_id).file_name} changed on disk: preparing its view again")
        self._show_image(image_id)

    def shutdown(self) -> None:
        """Stop building or reading a large image's view (the project closes)."""
        self._close_tiles()

    def _close_tiles(self) -> None:
        if self._tiles is not None:
            self._tiles.close()
            self._tiles.deleteLater()
            self._tiles = None

    def _instances_changed(self, image_id: int) -> None:
        if image_id == self._doc.current_image_id and self._canvas.has_image():
            self._refresh_timer.start()
        else:
            self._categories_timer.start()
