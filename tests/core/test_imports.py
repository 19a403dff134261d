"""Import boundaries: the engine never imports Qt, and the modules the GUI thread uses never import torch.

Each check runs in a fresh interpreter: this test process has already imported whatever other tests
needed, so its own ``sys.modules`` proves nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the engine, and names the first one after which PySide6 was loaded.
_IMPORT_WHOLE_ENGINE = """
import importlib
import json
import pkgutil
import sys

import maskrcnn_core

imported, pulled_in_qt = [], []
for info in pkgutil.walk_packages(maskrcnn_core.__path__, prefix="maskrcnn_core."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue  # importing it would run the command line
    had_qt = "PySide6" in sys.modules
    importlib.import_module(info.name)
    imported.append(info.name)
    if not had_qt and "PySide6" in sys.modules:
        pulled_in_qt.append(info.name)
print(json.dumps({"imported": imported, "pulled_in_qt": pulled_in_qt}))
"""

# The engine modules whose specs say "no torch": the app imports them outside its inference worker.
_TORCH_FREE = [
    "maskrcnn_core",
    "maskrcnn_core.types",
    "maskrcnn_core.protocol",
    "maskrcnn_core.atomic",
    "maskrcnn_core.cancel",
    "maskrcnn_core.downloads",
    "maskrcnn_core.masks",
    "maskrcnn_core.image_io",
    "maskrcnn_core.data",
    "maskrcnn_core.data.coco",
    "maskrcnn_core.data.synthetic",
    "maskrcnn_core.engine.evaluation",
    "maskrcnn_core.engine.tiling",
]


def _run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter from the repository root and return its last line of output."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"the subprocess failed:\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


def test_module_check_sees_pyside6_when_it_is_imported() -> None:
    # Guards the checks below: they look for this exact key in sys.modules.
    assert _run_fresh("import sys, PySide6.QtCore; print('PySide6' in sys.modules)") == "True"


def test_no_engine_module_imports_qt() -> None:
    result = json.loads(_run_fresh(_IMPORT_WHOLE_ENGINE))
    assert "maskrcnn_core.types" in result["imported"], result["imported"]
    assert result["pulled_in_qt"] == [], f"these engine modules import PySide6: {result['pulled_in_qt']}"


@pytest.mark.parametrize("module", _TORCH_FREE)
def test_gui_side_engine_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    assert _run_fresh(code) == "[]", f"importing {module} loads torch"
