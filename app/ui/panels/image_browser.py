"""The image browser: every image of the folder with a lazily loaded thumbnail and its status badge.

The rows live in a ``QStandardItemModel``: the view lays out and paints them without calling into
Python. A Python model would be asked ``rowCount``/``data`` hundreds of times per repaint, and each of
those calls waits for the GIL while a worker thread runs Python (a model being loaded): that made a
relayout stall the GUI thread for over 100 ms. Status changes and thumbnails update one item each.
Thumbnails are requested for the rows in view only (decoded in the thread pool), so a 10,000-image folder
costs one ``setItemData`` call per image up front. Unusable files get a red error mark and their message as
tooltip.

The list can show the images of one status only (or the unusable ones): each item carries its filter key
(``FilterKeyRole``) and a ``QSortFilterProxyModel`` matches it in C++, so filtering calls no Python per row
either. :class:`ImagePanel` puts the filter, a legend of the status marks and the list together.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPoint,
    QRect,
    QRegularExpression,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QImage,
    QPainter,
    QPen,
    QPixmap,
    QResizeEvent,
    QShowEvent,
    QStandardItemModel,
)
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QListView, QVBoxLayout, QWidget

from app.project.records import ImageRecord, ImageStatus
from app.project.settings import IMAGE_FILTER_ALL, IMAGE_FILTER_ERROR, IMAGE_FILTERS
from app.session.document import Document
from app.workers.image_loader import THUMBNAIL_SIZE, ImageLoader

ImageIdRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
ErrorRole = Qt.ItemDataRole.UserRole + 3
FilterKeyRole = Qt.ItemDataRole.UserRole + 4  # the status filter's key: the status, or "error"
UncertaintyRole = Qt.ItemDataRole.UserRole + 5  # the model's uncertainty about the image; -1: not scored

STATUS_COLORS = {
    ImageStatus.NEW: QColor("#9e9e9e"),
    ImageStatus.PREDICTED: QColor("#2f80ed"),
    ImageStatus.CORRECTED: QColor("#f2994a"),
    ImageStatus.VERIFIED: QColor("#27ae60"),
}
ERROR_COLOR = QColor("#d32f2f")
ICON_SIZE = 56
BADGE_SIZE = 14
_CACHE_LIMIT = 3000  # thumbnails kept in memory (about 30 KB each)


def decorate(thumb: QPixmap, status: ImageStatus, error: bool) -> QPixmap:
    """``thumb`` centred in an icon-sized pixmap with the status badge (or the red error mark) drawn in."""
    pixmap = QPixmap(ICON_SIZE, ICON_SIZE)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.drawPixmap((ICON_SIZE - thumb.width()) // 2, (ICON_SIZE - thumb.height()) // 2, thumb)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(QColor("white"), 1.5))  # visible on dark and light thumbnails alike
    badge = QRect(ICON_SIZE - BADGE_SIZE - 2, ICON_SIZE - BADGE_SIZE - 2, BADGE_SIZE, BADGE_SIZE)
    if error:
        painter.setBrush(ERROR_COLOR)
        painter.drawRoundedRect(badge, 2, 2)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "!")
    else:
        painter.setBrush(STATUS_COLORS[status])
        painter.drawEllipse(badge)
    painter.end()
    return pixmap


class ImageListModel(QStandardItemModel):
    """The document's images as items, kept in step with the document's signals.

    ``request_thumbnails(rows)`` (the view calls it for the rows it shows) starts decoding
    the thumbnails not loaded yet; an item shows a placeholder with its badge until then.
    ``currentRowChanged(row)`` tells the view the row of the document's current image whenever it
    changes, and again after the rows are rebuilt (-1: none).
    """

    currentRowChanged = Signal(int)

    def __init__(self, document: Document, loader: ImageLoader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._doc = document
        self._loader = loader
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self.rebuilding = False
        placeholder = QPixmap(ICON_SIZE, ICON_SIZE)
        placeholder.fill(QColor(70, 70, 70))
        self._placeholders = {
            (status, error): decorate(placeholder, status, error)
            for status in ImageStatus
            for error in (False, True)
        }
        document.imagesReset.connect(self._reset)
        document.imageChanged.connect(self._image_changed)
        document.currentImageChanged.connect(lambda _id: self.currentRowChanged.emit(self.current_row()))
        loader.thumbnailLoaded.connect(self._thumbnail_loaded)
        self._reset()

    def request_thumbnails(self, rows: Iterable[int]) -> None:
        images = self._doc.images()
        for row in rows:
            if not 0 <= row < len(images):
                continue
            image = images[row]
            if image.id not in self._thumbs and not self._doc.image_error(image.id):
                self._loader.load_thumbnail(image.id, self._doc.image_path(image.id))

    def current_row(self) -> int:
        """The row of the document's current image, or -1."""
        try:
            return self._doc.row_of(self._doc.current_image_id)
        except KeyError:
            return -1

    def _reset(self) -> None:
        self.rebuilding = True  # the view's current row moves as the rows go: not the user's choice
        self._thumbs.clear()
        self.clear()
        images = self._doc.images()
        self.setColumnCount(1)
        self.setRowCount(len(images))
        for row, image in enumerate(images):  # one call into Qt per row: 10,000 rows in ~50 ms
            self.setItemData(self.index(row, 0), self._roles(image))
        self.rebuilding = False
        self.currentRowChanged.emit(self.current_row())  # the rebuilt rows have no current one yet

    def _roles(self, image: ImageRecord) -> dict[int, object]:
        """Everything the view shows of ``image``: name, id, status, error, tooltip and decoration."""
        error = self._doc.image_error(image.id) or ""
        status = image.status
        thumb = self._thumbs.get(image.id)
        uncertainty = self._doc.image_uncertainty(image.id)
        unsure = "" if uncertainty is None else f"\nuncertainty {uncertainty.score:.2f}: {uncertainty.reason}"
        return {
            Qt.ItemDataRole.DisplayRole: image.file_name,
            ImageIdRole: image.id,
            StatusRole: status.value,  # a str in Qt: ImageStatus(value) gives the status back
            ErrorRole: error,
            FilterKeyRole: IMAGE_FILTER_ERROR if error else status.value,
            UncertaintyRole: -1.0 if uncertainty is None else uncertainty.score,
            Qt.ItemDataRole.ToolTipRole: f"{image.file_name}\n{error or 'status: ' + status.value}{unsure}",
            Qt.ItemDataRole.DecorationRole: (
                decorate(thumb, status, bool(error)) if thumb else self._placeholders[(status, bool(error))]
            ),
        }

    def _image_changed(self, image_id: int) -> None:
        try:
            row = self._doc.row_of(image_id)
        except KeyError:
            return
        self.setItemData(self.index(row, 0), self._roles(self._doc.image(image_id)))

    def set_thumbnail_from_overview(self, image_id: int, overview: QImage) -> None:
        """A large image's thumbnail from its view's overview (the loader can only give some formats a
        quick one; the others had a grey stand-in until their view was built)."""
        thumb = overview.scaled(
            THUMBNAIL_SIZE,
            THUMBNAIL_SIZE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self._thumbnail_loaded(image_id, thumb, None, "")

    def _thumbnail_loaded(
        self, image_id: int, image: QImage | None, size: tuple[int, int] | None, error: str
    ) -> None:
        try:
            self._doc.row_of(image_id)
        except KeyError:
            return  # a thumbnail of a previous folder
        if error:
            self._doc.set_image_error(image_id, error)  # imageChanged redraws the item
            return
        if image is None:  # the loader sends no image only together with an error
            return
        self._thumbs[image_id] = QPixmap.fromImage(image)
        if len(self._thumbs) > _CACHE_LIMIT:  # the oldest goes back to its placeholder (memory stays bounded)
            evicted, _ = self._thumbs.popitem(last=False)
            self._image_changed(evicted)
        if size is not None:
            self._doc.set_image_size(image_id, size)
        self._image_changed(image_id)


class ImageBrowser(QListView):
    """The list of images; ``imageSelected(id)`` fires when the user picks one. Its model is a filter
    (:meth:`set_status_filter`) over ``source``, the :class:`ImageListModel`."""

    imageSelected = Signal(int)

    def __init__(self, model: ImageListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setFilterRole(FilterKeyRole)
        self.status_filter = IMAGE_FILTER_ALL
        # While the filter drops rows (a new filter, an image whose status no longer matches) the view's
        # current row moves by itself: that is not the user choosing an image, so it is not announced, and
        # the document's current image is selected again after (when the filter shows it). Connected before
        # the view's selection model exists, so that these run before it moves the current row.
        self._rows_moving = 0
        for about_to, done in (
            (self.proxy.rowsAboutToBeRemoved, self.proxy.rowsRemoved),
            (self.proxy.layoutAboutToBeChanged, self.proxy.layoutChanged),
            (self.proxy.modelAboutToBeReset, self.proxy.modelReset),
        ):
            about_to.connect(self._rows_move)
            done.connect(self._rows_moved)
        self.setModel(self.proxy)
        self.setUniformItemSizes(True)  # row heights are never measured one by one
        self.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.selectionModel().currentChanged.connect(self._current_changed)
        # Deferred to the next event-loop turn: bursts (a scroll, a reset filling its rows) ask once, and
        # only after the rows have their data (an empty row is shorter, so more would seem in view).
        self._thumbnail_request = QTimer(self, singleShot=True, interval=0)
        self._thumbnail_request.timeout.connect(self.request_visible_thumbnails)
        self.verticalScrollBar().valueChanged.connect(self._thumbnail_request.start)
        model.modelReset.connect(self._thumbnail_request.start)
        model.rowsInserted.connect(self._thumbnail_request.start)
        self.proxy.layoutChanged.connect(self._thumbnail_request.start)
        self.proxy.rowsInserted.connect(self._thumbnail_request.start)
        model.currentRowChanged.connect(self.select_row)
        self.select_row(model.current_row())

    def request_visible_thumbnails(self) -> None:
        """Ask the model for the thumbnails of the rows in view (and a screenful below, for scrolling)."""
        shown = self.proxy.rowCount()
        if shown == 0:
            return
        first = self.indexAt(QPoint(2, 2)).row()
        last = self.indexAt(QPoint(2, self.viewport().height() - 2)).row()
        first = max(first, 0)
        last = shown - 1 if last < 0 else last
        rows = range(first, min(last + (last - first + 1), shown - 1) + 1)
        self.source.request_thumbnails(self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in rows)

    def set_status_filter(self, key: str) -> None:
        """Show the images whose filter key is ``key`` (one of ``IMAGE_FILTERS``; ``"all"``: every image)."""
        if key not in IMAGE_FILTERS:
            raise ValueError(f"no image filter {key!r}: one of {', '.join(IMAGE_FILTERS)}")
        self.status_filter = key
        pattern = "" if key == IMAGE_FILTER_ALL else f"^{QRegularExpression.escape(key)}$"
        self.proxy.setFilterRegularExpression(pattern)
        self.select_row(self.source.current_row())

    def set_most_uncertain_first(self, on: bool) -> None:
        """List the images by the model's uncertainty, most uncertain first (unscored ones last), or by file
        name. Sorted in C++ by the proxy on ``UncertaintyRole``, and kept sorted as new scores arrive."""
        self.proxy.setSortRole(UncertaintyRole)
        self.proxy.sort(0 if on else -1, Qt.SortOrder.DescendingOrder)
        self.select_row(self.source.current_row())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._thumbnail_request.start()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._thumbnail_request.start()

    def select_row(self, row: int) -> None:
        """Make source ``row`` (the document's current image) current without re-announcing it; none is
        current while the filter hides it."""
        index = self.proxy.mapFromSource(self.source.index(row, 0))
        if self.currentIndex() != index:
            self.blockSignals(True)
            self.setCurrentIndex(index)
            self.blockSignals(False)
            self.scrollTo(index)

    def _rows_move(self, *_args: object) -> None:
        self._rows_moving += 1

    def _rows_moved(self, *_args: object) -> None:
        self._rows_moving -= 1
        if not self._rows_moving:
            self.select_row(self.source.current_row())

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and not self.source.rebuilding and not self._rows_moving:
            self.imageSelected.emit(current.data(ImageIdRole))


def filter_label(key: str) -> str:
    """What the filter menu calls ``key``."""
    if key == IMAGE_FILTER_ALL:
        return "All images"
    if key == IMAGE_FILTER_ERROR:
        return "Unusable files (error)"
    return key.capitalize()


def legend_html() -> str:
    """The status marks the browser draws, each with its name (the colours are the badges' own)."""
    marks = [f'<span style="color:{c.name()}">●</span>&nbsp;{s.value}' for s, c in STATUS_COLORS.items()]
    marks.append(f'<span style="color:{ERROR_COLOR.name()}">■</span>&nbsp;{IMAGE_FILTER_ERROR}')
    return " &nbsp; ".join(marks)


class ImagePanel(QWidget):
    """The Images dock: which images to show (``filterChanged(key)`` when the user picks), the legend of the
    status marks, and the list itself."""

    filterChanged = Signal(str)

    def __init__(self, browser: ImageBrowser, status_filter: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.filter_box = QComboBox()
        for key in IMAGE_FILTERS:
            if key == IMAGE_FILTER_ALL:
                self.filter_box.addItem(filter_label(key), key)
                continue
            error = key == IMAGE_FILTER_ERROR
            status = ImageStatus.NEW if error else ImageStatus(key)
            badge = QPixmap(BADGE_SIZE + 4, BADGE_SIZE + 4)
            badge.fill(Qt.GlobalColor.transparent)
            painter = QPainter(badge)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setBrush(ERROR_COLOR if error else STATUS_COLORS[status])
            painter.setPen(Qt.PenStyle.NoPen)
            if error:
                painter.drawRoundedRect(2, 2, BADGE_SIZE, BADGE_SIZE, 2, 2)
            else:
                painter.drawEllipse(2, 2, BADGE_SIZE, BADGE_SIZE)
            painter.end()
            self.filter_box.addItem(badge, filter_label(key), key)
        self.legend = QLabel(legend_html())
        self.legend.setWordWrap(True)
        self.legend.setToolTip(
            "The mark on each thumbnail: the image's status, or a red ! for a file that cannot be used"
        )
        self.uncertain_first = QCheckBox("Most uncertain first")
        self.uncertain_first.setToolTip(
            "Sort by how unsure the model was of each image (N: Review next goes to the most uncertain one "
            "not yet corrected or verified)"
        )
        self.uncertain_first.toggled.connect(browser.set_most_uncertain_first)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.filter_box, stretch=1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.uncertain_first)
        layout.addWidget(self.legend)
        layout.addWidget(browser, stretch=1)
        self.set_status_filter(status_filter)
        self.filter_box.currentIndexChanged.connect(self._picked)

    def set_status_filter(self, key: str) -> None:
        """Show ``key``'s images and say so in the menu, without announcing it."""
        self.browser.set_status_filter(key)
        self.filter_box.blockSignals(True)
        self.filter_box.setCurrentIndex(self.filter_box.findData(key))
        self.filter_box.blockSignals(False)

    def _picked(self, index: int) -> None:
        key = self.filter_box.itemData(index)
        self.browser.set_status_filter(key)
        self.filterChanged.emit(key)
