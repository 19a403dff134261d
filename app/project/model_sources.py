"""Where checkpoints come from: the bundled demo model, torchvision's COCO weights (the engine's download
catalogue, by alias: ``coco``, ``coco-v2``), or any file the user picks. Found without importing torch (the
GUI thread never does)."""

from __future__ import annotations

from pathlib import Path

from app.resources import DEMO_MODEL
from maskrcnn_core import downloads


def bundled_demo_model() -> Path | None:
    """The bundled demo model (``app/resources/models/demo.pt``) when it is there."""
    return DEMO_MODEL if DEMO_MODEL.is_file() else None


class NotDownloaded(ValueError):
    """A catalogue alias (``coco``) whose file is not in the cache yet."""

    def __init__(self, weights: downloads.PretrainedWeights) -> None:
        super().__init__(
            f"'{weights.name}' ({weights.filename}, {weights.size_mb:.0f} MB) is not downloaded yet: "
            f"Model ▸ Get models…, or `maskrcnn-core weights download {weights.name}`"
        )
        self.weights = weights


def resolve(source: str) -> Path:
    """The checkpoint file ``source`` names: a catalogue alias's cached file, else ``source`` as a path.

    ``NotDownloaded`` for an alias whose file is not in the cache; a path is returned as given (the caller
    checks that it exists)."""
    weights = downloads.CATALOGUE.get(source)
    if weights is None:
        return Path(source)
    if not downloads.is_cached(weights):
        raise NotDownloaded(weights)
    return downloads.cached_path(weights)


def coco_weights_in_hub_cache() -> list[Path]:
    """torchvision's COCO Mask R-CNN files already downloaded (``maskrcnn_resnet50_fpn*.pth``)."""
    folder = downloads.hub_checkpoints_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("maskrcnn_*.pth") if p.is_file())
