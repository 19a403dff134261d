"""The project's settings: every key, type and default written once, read and written through the store.

A project keeps a few values between sessions in its SQLite file (the store's ``settings`` table, one JSON
value per key). :class:`ProjectSettings` names each of them as a typed field with its default::

    settings = ProjectSettings(store)
    settings.score_threshold          # 0.5 until someone moves the slider
    settings.score_threshold = 0.3    # one durable store write

A stored value of the wrong type or out of range (a hand-edited file, an older version's format) reads
as the default, so a bad value never stops a project from opening; writing a bad value is refused with
a ``ValueError`` before anything is stored.

The folder the project annotates (``images_dir``) is the store's own bookkeeping and stays in
:mod:`app.project.store`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from app.project.export_options import EXPORT_ALL_IMAGES, EXPORT_FORMATS, EXPORT_IMAGES
from app.project.records import ImageStatus
from maskrcnn_core.engine.tiling import TILE_MODES, TileOptions, TilingError
from maskrcnn_core.protocol import TIERS, TrainRequest

if TYPE_CHECKING:
    from app.project.store import ProjectStore

T = TypeVar("T")

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_OVERLAY_OPACITY = 0.45
# What the image list can be narrowed to: every image, the images of one status, or the unusable files.
IMAGE_FILTER_ALL = "all"
IMAGE_FILTER_ERROR = "error"
IMAGE_FILTERS = (IMAGE_FILTER_ALL, *(status.value for status in ImageStatus), IMAGE_FILTER_ERROR)
# How the canvas colours instances: each its own hue, or its category's colour (the Categories panel's
# Colour…). By category, so that a project's categories read apart on the canvas from the first image.
COLOUR_BY_CATEGORY, COLOUR_BY_INSTANCE = "category", "instance"
OVERLAY_COLOURS = (COLOUR_BY_CATEGORY, COLOUR_BY_INSTANCE)
DEFAULT_OVERLAY_COLOUR = COLOUR_BY_CATEGORY


def _fraction(value: object) -> float | None:
    """``value`` as a float in [0, 1], or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def _optional_id(value: object) -> int | None:
    """``value`` as a record id (an int), or ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _overlay_colour(value: object) -> str | None:
    return value if isinstance(value, str) and value in OVERLAY_COLOURS else None


def _image_filter(value: object) -> str | None:
    return value if isinstance(value, str) and value in IMAGE_FILTERS else None


def _export_format(value: object) -> str | None:
    return value if isinstance(value, str) and value in EXPORT_FORMATS else None


def _export_images(value: object) -> str | None:
    return value if isinstance(value, str) and value in EXPORT_IMAGES else None


def _tier(value: object) -> str | None:
    return value if isinstance(value, str) and value in TIERS else None


def _tile_mode(value: object) -> str | None:
    return value if isinstance(value, str) and value in TILE_MODES else None


def _pixels(smallest: int) -> Callable[[object], int | None]:
    """A parser of a whole number of pixels, ``smallest`` or more."""

    def parse(value: object) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value if value >= smallest else None

    return parse


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: its key in the store, its default, and ``parse`` (the stored JSON value as a ``T``,
    or ``None`` when it is not a valid one). Used as a field of :class:`ProjectSettings`."""

    key: str
    default: T
    parse: Callable[[object], T | None]
    description: str

    @overload
    def __get__(self, settings: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, settings: ProjectSettings, owner: type) -> T: ...
    def __get__(self, settings: ProjectSettings | None, owner: type) -> Setting[T] | T:
        if settings is None:
            return self
        return settings.read(self)

    def __set__(self, settings: ProjectSettings, value: T) -> None:
        settings.write(self, value)

    def parsed(self, stored: object) -> T:
        """The stored value, or the default when it is missing or not valid."""
        if stored is None:
            return self.default
        value = self.parse(stored)
        return self.default if value is None else value


class ProjectSettings:
    """The settings of one open project, each a typed field with its default (see the module docs)."""

    score_threshold = Setting[float](
        "score_threshold",
        DEFAULT_SCORE_THRESHOLD,
        _fraction,
        "predictions scoring below it are hidden, and left out of exports and training sets",
    )
    overlay_opacity = Setting[float](
        "overlay_opacity", DEFAULT_OVERLAY_OPACITY, _fraction, "how opaque the instance masks are drawn"
    )
    overlay_colour = Setting[str](
        "overlay_colour",
        DEFAULT_OVERLAY_COLOUR,
        _overlay_colour,
        "how instances are coloured on the canvas: 'category' or 'instance'",
    )
    image_filter = Setting[str](
        "image_filter",
        IMAGE_FILTER_ALL,
        _image_filter,
        f"the images the list shows: one of {', '.join(IMAGE_FILTERS)}",
    )
    export_format = Setting[str](
        "export_format",
        "rle",
        _export_format,
        f"the last export's format: one of {', '.join(EXPORT_FORMATS)}",
    )
    export_images = Setting[str](
        "export_images",
        EXPORT_ALL_IMAGES,
        _export_images,
        f"which images the last export wrote: one of {', '.join(EXPORT_IMAGES)}",
    )
    export_path = Setting[str | None]("export_path", None, _optional_text, "the file the last export wrote")
    last_image_id = Setting[int | None](
        "last_image_id", None, _optional_id, "the image shown last, shown again when the project reopens"
    )
    finetune_tier = Setting[str](
        "finetune_tier",
        TrainRequest.tier,  # the engine's default, "auto"
        _tier,
        f"what the last fine-tune trained: one of {', '.join(TIERS)} (auto: the engine's rule)",
    )
    tile_mode = Setting[str](
        "tile_mode",
        TileOptions.mode,  # the engine's default, "auto"
        _tile_mode,
        f"tiled inference for large images: one of {', '.join(TILE_MODES)} (auto: the engine's rule)",
    )
    tile_size = Setting[int](
        "tile_size", TileOptions.size, _pixels(32), "the side of an inference tile, in image pixels"
    )
    tile_overlap = Setting[int](
        "tile_overlap",
        TileOptions.overlap,
        _pixels(0),
        "the pixels neighbouring tiles share: at least the largest object",
    )
    # The active model belongs to the model registry (app/session/model_registry.py): it alone reads and
    # writes these two. They are declared here so that every key of the settings table is in one place.
    active_version_id = Setting[int | None](
        "active_version_id", None, _optional_id, "the model version that segments (the registry's choice)"
    )
    active_model_path = Setting[str | None](
        "active_model",
        None,
        _optional_text,
        "the checkpoint path that older versions stored as the active model (migrated by the registry)",
    )

    def __init__(self, store: ProjectStore) -> None:
        self.store = store

    @classmethod
    def fields(cls) -> dict[str, Setting[Any]]:
        """Every setting by attribute name."""
        return {name: value for name, value in vars(cls).items() if isinstance(value, Setting)}

    def tile_options(self) -> TileOptions:
        """The tiling the model segments this project's images with (a stored size no larger than the
        stored overlap, which cannot tile, reads as the default size and overlap)."""
        try:
            return TileOptions(mode=self.tile_mode, size=self.tile_size, overlap=self.tile_overlap)
        except TilingError:
            return TileOptions(mode=self.tile_mode)

    def read(self, setting: Setting[T]) -> T:
        return setting.parsed(self.store.get_setting(setting.key))

    def write(self, setting: Setting[T], value: T) -> None:
        """Store ``value`` (durable when this returns); ``ValueError`` for a value the setting cannot hold."""
        stored = None if value is None else setting.parse(value)
        if stored is None and (value is not None or setting.default is not None):
            raise ValueError(f"{setting.key} cannot be {value!r}: it is {setting.description}")
        self.store.set_setting(setting.key, stored)
