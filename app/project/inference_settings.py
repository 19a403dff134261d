"""How this computer runs the model on its CPU: an app-wide setting (not a project's), kept as JSON in the
user data dir beside the recent folders.

The engine's rule (``maskrcnn_core.inference_options``) decides what runs from these two choices: the
backend (``auto``: OpenVINO when installed, or ``torch``) and whether reduced precision (bfloat16, on CPUs
that compute it natively) is allowed. Reduced precision is off by default, as in the library: float32
gives the same detections as torchvision's own model, bfloat16 is faster where the CPU has AMX or
AVX512-BF16 and keeps mask AP within 0.01 of it (BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from app.project.locations import user_data_dir
from maskrcnn_core.atomic import atomic_write

CPU_BACKENDS = ("auto", "torch")  # what the window offers: the engine's auto (OpenVINO when installed), torch


@dataclass(frozen=True)
class InferenceSettings:
    cpu_backend: str = "auto"
    allow_reduced_precision: bool = False


def _path() -> Path:
    return user_data_dir() / "inference.json"


def load() -> InferenceSettings:
    """The saved choice; the defaults when there is none or the file cannot be read (a bad value alone
    falls back to its default)."""
    try:
        raw = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    default = InferenceSettings()
    backend = raw.get("cpu_backend")
    allow = raw.get("allow_reduced_precision")
    return InferenceSettings(
        cpu_backend=backend if backend in CPU_BACKENDS else default.cpu_backend,
        allow_reduced_precision=allow if isinstance(allow, bool) else default.allow_reduced_precision,
    )


def save(settings: InferenceSettings) -> None:
    """Keep the choice for the next start (``OSError`` when the user data dir cannot be written)."""
    atomic_write(_path(), lambda f: f.write(json.dumps(asdict(settings)).encode()))
