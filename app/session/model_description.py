"""What the window says about the active model: its name, its classes and what it was trained on.

One place for that text, so the status bar, its tooltip and the Model menu all say the same. The facts
come from the checkpoint (:class:`maskrcnn_core.types.ModelInfo`: the class map and the metadata a
training run writes: ``num_train_images``, ``images``, ``train_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.project.model_sources import DEMO_MODEL
from maskrcnn_core.types import ModelInfo

SHOWN_CLASS_NAMES = 3  # the status bar names this many classes, then "…"
DEMO_NOTICE = "demo: synthetic shapes only"


@dataclass(frozen=True)
class ModelDescription:
    name: str
    classes: str  # "4 classes: circle, square, triangle, …"
    trained_on: str  # "trained on 400 images (runs/demo/images)"
    is_demo: bool  # the bundled demo model, which knows only the synthetic shapes

    @property
    def headline(self) -> str:
        """The name, and for the demo model what it is: the Model menu's title for it."""
        return f"{self.name} ({DEMO_NOTICE})" if self.is_demo else self.name

    @property
    def status_text(self) -> str:
        """One line for the status bar."""
        parts = [f"Model: {self.name}", self.classes]
        if self.is_demo:
            parts.append(DEMO_NOTICE)
        return " · ".join(parts)

    @property
    def details(self) -> str:
        """Several lines for the tooltip and the Model menu."""
        lines = [f"Model: {self.name}", self.classes, self.trained_on]
        if self.is_demo:
            lines.append(f"The bundled {DEMO_NOTICE}: get a real model with Model ▸ Get models…")
        return "\n".join(lines)


def describe_model(info: ModelInfo, *, shown: int = SHOWN_CLASS_NAMES) -> ModelDescription:
    names = info.class_names
    listed = ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
    classes = f"{len(names)} class{'es' if len(names) != 1 else ''}" + (f": {listed}" if names else "")
    return ModelDescription(info.name, classes, _trained_on(info.metadata), is_demo_model(info))


def is_demo_model(info: ModelInfo) -> bool:
    """Whether ``info`` is the bundled demo checkpoint (``app/resources/models/demo.pt``)."""
    if info.path is None:
        return False
    try:
        return Path(info.path).resolve() == DEMO_MODEL.resolve()
    except OSError:
        return False


def _trained_on(metadata: dict) -> str:
    count = metadata.get("num_train_images")
    training = metadata.get("training")
    if count is None and isinstance(training, dict):
        count = training.get("num_train_images")
    where = metadata.get("images") or metadata.get("train_json")
    if count is None and not where:
        return "trained on: not recorded in the checkpoint"
    text = f"trained on {count} image{'s' if count != 1 else ''}" if count is not None else "trained on"
    return f"{text} ({Path(str(where)).name})" if where else text
