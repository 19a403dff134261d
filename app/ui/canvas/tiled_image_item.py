"""A large image drawn from its view pyramid: only the tiles in view, at the level the zoom needs.

Scene coordinates are full-resolution image pixels, as for a small image, so the overlay and every tool
work unchanged anywhere in the image. A paint draws the overview under the exposed area, then each tile of
the chosen level that is in memory, and for a tile that is not, the part of a coarser tile that covers it;
missing tiles are asked for (:class:`app.workers.view_tiles.LargeImageTiles`) and repainted when they
arrive. Tiles in memory are kept up to :data:`TILE_MEMORY_BUDGET`, least recently drawn dropped first.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.project.view_pyramid import TILE_SIZE, level_count, tile_grid
from app.ui.canvas.overlay_item import view_scale
from app.workers.view_tiles import LargeImageTiles, TileKey

#: bytes of decoded tiles kept in memory
TILE_MEMORY_BUDGET = 256 << 20


class TiledImageItem(QGraphicsItem):
    """The image of ``tiles`` at full-resolution scene coordinates ``[0, W) x [0, H)``."""

    def __init__(self, tiles: LargeImageTiles) -> None:
        super().__init__()
        self.tiles = tiles
        height, width = tiles.size
        self._bounds = QRectF(0, 0, width, height)
        self._top = level_count(tiles.size) - 1  # the overview's level
        self._overview: QImage | None = None
        self._cache: OrderedDict[TileKey, QImage] = OrderedDict()
        self._cached_bytes = 0
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        tiles.overviewReady.connect(self._on_overview)
        tiles.tileReady.connect(self._on_tile)
        tiles.pyramidReady.connect(self.update)

    def has_overview(self) -> bool:
        return self._overview is not None

    def cached_tiles(self) -> list[TileKey]:
        """The tiles in memory, least recently drawn first."""
        return list(self._cache)

    def level_for(self, scale: float) -> int:
        """The pyramid level drawn at ``scale`` screen pixels per image pixel: the coarsest with at least
        one of its pixels per screen pixel (the top level is the overview)."""
        if scale >= 1.0:
            return 0
        return min(self._top, int(math.floor(math.log2(1.0 / scale) + 1e-9)))

    # -------------------------------------------------------------------------------------------- painting
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._bounds

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        exposed = option.exposedRect.intersected(self._bounds)
        if exposed.isEmpty():
            return
        scale = view_scale(painter.worldTransform()) * painter.device().devicePixelRatioF()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        level = self.level_for(scale)
        if level >= self._top or not self.tiles.can_serve(level):
            self._draw_overview(painter, exposed)
            return
        step = TILE_SIZE << level  # image pixels per tile side
        rows, cols = tile_grid(self.tiles.size, level)
        r0, r1 = int(exposed.top() // step), min(rows - 1, int(exposed.bottom() // step))
        c0, c1 = int(exposed.left() // step), min(cols - 1, int(exposed.right() // step))
        for row in range(r0, r1 + 1):
            for col in range(c0, c1 + 1):
                # only the exposed part of each tile: a brush move repaints a few pixels, not a tile
                target = QRectF(col * step, row * step, step, step).intersected(exposed)
                key = (level, row, col)
                image = self._cache.get(key)
                if image is not None:
                    self._cache.move_to_end(key)
                    self._draw_part(painter, target, image, col * step, row * step, 1 << level)
                    continue
                if not self._draw_coarser(painter, target, level, row, col):
                    self._draw_overview(painter, target)
                self.tiles.request(*key)
        if widget is not None:
            self._forget_out_of_view(painter, widget, level)

    def _draw_overview(self, painter: QPainter, target: QRectF) -> None:
        if self._overview is not None:
            self._draw_part(
                painter, target, self._overview, 0, 0, self._bounds.width() / self._overview.width()
            )

    @staticmethod
    def _draw_part(
        painter: QPainter, target: QRectF, image: QImage, x0: float, y0: float, pixel: float
    ) -> None:
        """Draw the part of ``image`` (placed at scene ``(x0, y0)``, each of its pixels ``pixel`` scene
        pixels wide) that covers ``target``."""
        source = QRectF(
            (target.x() - x0) / pixel,
            (target.y() - y0) / pixel,
            target.width() / pixel,
            target.height() / pixel,
        )
        painter.drawImage(target, image, source)

    def _draw_coarser(self, painter: QPainter, target: QRectF, level: int, row: int, col: int) -> bool:
        """Draw ``target`` of tile ``(level, row, col)`` from the nearest coarser tile in memory, if any."""
        for up in range(1, self._top - level):
            coarse_row, coarse_col = row >> up, col >> up
            coarse = self._cache.get((level + up, coarse_row, coarse_col))
            if coarse is not None:
                step = TILE_SIZE << (level + up)
                self._draw_part(
                    painter, target, coarse, coarse_col * step, coarse_row * step, 1 << (level + up)
                )
                return True
        return False

    def _forget_out_of_view(self, painter: QPainter, widget: QWidget, level: int) -> None:
        """Requests for tiles no longer in the view are dropped before they are read."""
        inverse, invertible = painter.worldTransform().inverted()
        if not invertible:
            return
        view = inverse.mapRect(QRectF(widget.rect())).intersected(self._bounds)
        step = TILE_SIZE << level
        keys = {
            (level, row, col)
            for row in range(int(view.top() // step), int(view.bottom() // step) + 1)
            for col in range(int(view.left() // step), int(view.right() // step) + 1)
        }
        self.tiles.keep_only(keys)

    # ---------------------------------------------------------------------------------------------- tiles
    def _on_overview(self, image: QImage) -> None:
        self._overview = image
        self.update()

    def _on_tile(self, level: int, row: int, col: int, image: QImage) -> None:
        key = (level, row, col)
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.sizeInBytes()
        self._cache[key] = image
        self._cached_bytes += image.sizeInBytes()
        while self._cached_bytes > TILE_MEMORY_BUDGET and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.sizeInBytes()
        step = TILE_SIZE << level
        self.update(QRectF(col * step, row * step, step, step))
