"""Which execution backend and precision a prediction runs with: the one owner of that rule.

Torch-free and Qt-free, so the window's settings and the command line offer the same words without
loading torch. The Predictor asks :func:`choose_backend` and runs what it answers; the answer carries a
one-line reason whenever it is not what was asked for (OpenVINO missing, a GPU, no native bfloat16).

The rule:

- ``backend="auto"``: OpenVINO on a CPU when it is installed, else torch. On a GPU always torch (CUDA has
  its own mixed precision and channels-last path).
- ``precision="auto"``: bfloat16 only when the CPU computes it natively (AMX or AVX512-BF16) *and* the
  user allowed reduced precision; float32 otherwise. An explicit ``"bf16"`` counts as allowed, but on a
  CPU without native bfloat16 it runs float32: emulated bfloat16 is several times slower than float32.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
#: How the app and the command line name each backend that runs.
BACKEND_NAMES = {"torch": "torch", "openvino": "OpenVINO"}


@dataclass(frozen=True)
class BackendChoice:
    """What a Predictor runs: ``backend`` is ``"torch"`` or ``"openvino"``; ``precision`` ``"fp32"`` or
    ``"bf16"`` (on CUDA, ``"mixed"`` when autocast is on); ``reason`` says in one line why this is not what
    was asked for (empty when it is)."""

    backend: str
    precision: str
    reason: str = ""

    @property
    def label(self) -> str:
        """``"OpenVINO fp32"``, ``"torch bf16"``…: what the status bar and the command line show."""
        return f"{BACKEND_NAMES[self.backend]} {self.precision}"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (Intel AMX or AVX512-BF16; Linux's CPU flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def choose_backend(
    backend: str = "auto",
    precision: str = "auto",
    *,
    on_gpu: bool = False,
    allow_reduced_precision: bool = False,
    openvino_available: bool | None = None,
    native_bf16: bool | None = None,
) -> BackendChoice:
    """The backend and precision to run with (see the module's rule). ``openvino_available`` and
    ``native_bf16`` default to this machine's; :class:`ValueError` for an unknown word."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if on_gpu:
        reason = "OpenVINO runs on the CPU; the GPU runs torch" if backend == "openvino" else ""
        return BackendChoice("torch", "fp32", reason)
    available = openvino_installed() if openvino_available is None else openvino_available
    reasons = []
    chosen = "torch" if backend == "torch" else "openvino"
    if chosen == "openvino" and not available:
        chosen = "torch"
        reasons.append("OpenVINO is not installed (pip install openvino): running on torch")
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    wants_bf16 = precision == "bf16" or (precision == "auto" and allow_reduced_precision)
    chosen_precision = "fp32"
    if wants_bf16 and chosen == "torch":
        if precision == "bf16":
            reasons.append("bf16 runs only through OpenVINO: torch runs fp32")
    elif wants_bf16 and not native:
        if precision == "bf16":
            reasons.append("this CPU has no native bfloat16 (AMX or AVX512-BF16), where it is slower: fp32")
    elif wants_bf16:
        chosen_precision = "bf16"
    return BackendChoice(chosen, chosen_precision, "; ".join(reasons))
