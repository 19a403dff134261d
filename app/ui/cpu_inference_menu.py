"""Model ▸ CPU inference: how this computer runs the model on its CPU (an app-wide choice, see
:mod:`app.project.inference_settings`), with what each choice costs and gives."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu

from app.project import inference_settings
from app.project.inference_settings import InferenceSettings
from maskrcnn_core.inference_options import cpu_has_native_bf16, openvino_installed

# (text, tooltip, settings) for each choice, in menu order
CHOICES: tuple[tuple[str, str, InferenceSettings], ...] = (
    (
        "OpenVINO, exact (float32)",
        "The backbone and heads compiled by OpenVINO: the same detections as torch, faster "
        "(BENCHMARKS.md has this machine's figures). Falls back to torch where OpenVINO is missing.",
        InferenceSettings("auto", allow_reduced_precision=False),
    ),
    (
        "OpenVINO, faster (bfloat16)",
        "bfloat16 on CPUs that compute it natively (Intel AMX or AVX512-BF16): several times faster, "
        "mask AP within 0.01 of float32 on the demo model. Elsewhere float32 runs.",
        InferenceSettings("auto", allow_reduced_precision=True),
    ),
    (
        "torch only",
        "torch's own kernels, as training uses them; slower on most CPUs.",
        InferenceSettings("torch", allow_reduced_precision=False),
    ),
)


def build_cpu_inference_menu(parent: QMenu, on_changed: Callable[[], None]) -> QMenu:
    """The submenu, checked at the saved choice; choosing saves it and calls ``on_changed`` (which
    reloads the model so the choice takes effect)."""
    menu = parent.addMenu("CPU &inference")
    group = QActionGroup(menu)
    group.setExclusive(True)
    saved = inference_settings.load()
    native_bf16 = cpu_has_native_bf16()
    for text, tooltip, settings in CHOICES:
        action = QAction(text, menu, checkable=True)
        action.setToolTip(tooltip)
        if settings.allow_reduced_precision and not native_bf16:
            action.setText(f"{text}: not on this CPU (no native bfloat16)")
            action.setEnabled(False)
        if settings.cpu_backend != "torch" and not openvino_installed():
            action.setText(f"{text}: OpenVINO is not installed")
            action.setEnabled(False)
        action.setChecked(settings == saved)
        action.triggered.connect(lambda _checked=False, s=settings: _choose(s, on_changed))
        group.addAction(action)
        menu.addAction(action)
    menu.setToolTipsVisible(True)
    return menu


def _choose(settings: InferenceSettings, on_changed: Callable[[], None]) -> None:
    if settings == inference_settings.load():
        return
    try:
        inference_settings.save(settings)
    except OSError:
        pass  # the choice still applies to this session; it is only not remembered
    on_changed()
