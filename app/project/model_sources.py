"""Where checkpoints come from: the bundled demo model, COCO weights already in the torch hub cache, or
any file the user picks. Found without importing torch (the GUI thread never does)."""

from __future__ import annotations

import os
from pathlib import Path

import app

RESOURCES = Path(app.__file__).resolve().parents[1] / "resources"
DEMO_MODEL = RESOURCES / "models" / "demo.pt"


def bundled_demo_model() -> Path | None:
    """``resources/models/demo.pt`` when it is there (trained on the synthetic shapes)."""
    return DEMO_MODEL if DEMO_MODEL.is_file() else None


def torch_hub_checkpoints_dir() -> Path:
    """torch's download cache: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home) / "hub" / "checkpoints"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "torch" / "hub" / "checkpoints"


def coco_weights_in_hub_cache() -> list[Path]:
    """torchvision's COCO Mask R-CNN files already downloaded (``maskrcnn_resnet50_fpn*.pth``)."""
    folder = torch_hub_checkpoints_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("maskrcnn_*.pth") if p.is_file())
