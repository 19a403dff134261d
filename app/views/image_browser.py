"""The image browser: every image of the folder with a lazily loaded thumbnail and a status badge.

A ``QListView`` over a list model with uniform row sizes, so a 10,000-image folder costs nothing up front:
Qt asks only for the rows it paints, and only those rows request a thumbnail (decoded in the thread
pool). Unusable files get a red error mark and their message as tooltip and status text.
"""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QListView, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.document import Document
from app.model_types import ImageStatus
from app.workers.image_loader import ImageLoader

ImageIdRole = Qt.ItemDataRole.UserRole + 1
StatusRole = Qt.ItemDataRole.UserRole + 2
ErrorRole = Qt.ItemDataRole.UserRole + 3

STATUS_COLORS = {
    ImageStatus.NEW: QColor("#9e9e9e"),
    ImageStatus.PREDICTED: QColor("#2f80ed"),
    ImageStatus.CORRECTED: QColor("#f2994a"),
    ImageStatus.VERIFIED: QColor("#27ae60"),
}
ERROR_COLOR = QColor("#d32f2f")
ICON_SIZE = 56
_CACHE_LIMIT = 3000  # thumbnails kept in memory (about 30 KB each)


class ImageListModel(QAbstractListModel):
    """The document's images as rows; thumbnails are requested the first time a row is painted."""

    def __init__(self, document: Document, loader: ImageLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._doc = document
        self._loader = loader
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self._placeholder = QPixmap(ICON_SIZE, ICON_SIZE)
        self._placeholder.fill(QColor(70, 70, 70))
        document.imagesReset.connect(self._reset)
        document.imageChanged.connect(self._image_changed)
        loader.thumbnailLoaded.connect(self._thumbnail_loaded)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._doc.images())

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        image = self._doc.images()[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return image.file_name
        if role == ImageIdRole:
            return image.id
        if role == StatusRole:
            return image.status
        if role == ErrorRole:
            return self._doc.image_error(image.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            error = self._doc.image_error(image.id)
            return (
                f"{image.file_name}\n{error}" if error else f"{image.file_name}\nstatus: {image.status.value}"
            )
        if role == Qt.ItemDataRole.DecorationRole:
            thumb = self._thumbs.get(image.id)
            if thumb is not None:
                self._thumbs.move_to_end(image.id)
                return thumb
            if not self._doc.image_error(image.id):
                self._loader.load_thumbnail(image.id, self._doc.image_path(image.id))
            return self._placeholder
        return None

    def _reset(self) -> None:
        self.beginResetModel()
        self._thumbs.clear()
        self.endResetModel()

    def _image_changed(self, image_id: int) -> None:
        index = self.index(self._doc.row_of(image_id))
        self.dataChanged.emit(index, index)

    def _thumbnail_loaded(
        self, image_id: int, image: QImage | None, size: tuple[int, int] | None, error: str
    ) -> None:
        try:
            row = self._doc.row_of(image_id)
        except KeyError:
            return  # a thumbnail of a previous folder
        if error:
            self._doc.set_image_error(image_id, error)
        else:
            self._thumbs[image_id] = QPixmap.fromImage(image)
            if len(self._thumbs) > _CACHE_LIMIT:
                self._thumbs.popitem(last=False)
            if size is not None:
                self._doc.set_image_size(image_id, size)
        index = self.index(row)
        self.dataChanged.emit(index, index)


class _BadgeDelegate(QStyledItemDelegate):
    """Draws the row as usual, then a status dot (or a red error mark) at its right edge."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        rect: QRect = option.rect
        d = 12
        badge = QRect(rect.right() - d - 6, rect.center().y() - d // 2, d, d)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor("white"), 1.5))  # visible on the selection highlight too
        if index.data(ErrorRole):
            painter.setBrush(ERROR_COLOR)
            painter.drawRoundedRect(badge, 2, 2)
            painter.setPen(QColor("white"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "!")
        else:
            painter.setBrush(STATUS_COLORS[index.data(StatusRole)])
            painter.drawEllipse(badge)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        return QSize(200, ICON_SIZE + 8)


class ImageBrowser(QListView):
    """The list of images; ``imageSelected(id)`` fires when the user picks one."""

    imageSelected = Signal(int)

    def __init__(self, model: ImageListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setUniformItemSizes(True)  # row heights are never measured one by one
        self.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.setItemDelegate(_BadgeDelegate(self))
        self.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.selectionModel().currentChanged.connect(self._current_changed)

    def select_image(self, image_id: int, row: int) -> None:
        """Make ``image_id`` (at ``row``) current without re-announcing it."""
        index = self.model().index(row, 0)
        if self.currentIndex() != index:
            self.blockSignals(True)
            self.setCurrentIndex(index)
            self.blockSignals(False)
            self.scrollTo(index)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.imageSelected.emit(current.data(ImageIdRole))
