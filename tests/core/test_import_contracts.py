"""The custom import-linter contract (tests/import_contracts.py) on a small package written for the test."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from import_contracts import ForbiddenExternalSubmodulesContract

FILES = {
    "__init__.py": "",
    "low/__init__.py": "",
    "low/model.py": "from PySide6.QtCore import QObject\n",
    "low/view.py": "import json\nfrom PySide6 import QtGui, QtWidgets\n",
    "low/dotted.py": "import PySide6.QtWidgets\n",
    "low/typed.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from PySide6.QtWidgets import QWidget\n"
    ),
    "ui.py": "from PySide6.QtWidgets import QWidget\n",
}


def _offences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: list[str]) -> list[tuple[str, int]]:
    for name, text in FILES.items():
        path = tmp_path / "layered" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph(
        "layered", include_external_packages=True, exclude_type_checking_imports=True, cache_dir=None
    )
    contract = ForbiddenExternalSubmodulesContract(
        name="no widgets below the ui",
        session_options={"include_external_packages": "true"},
        contract_options={"source_modules": sources, "forbidden_modules": ["PySide6.QtWidgets"]},
    )
    check = contract.check(graph, verbose=False)
    offences = [(o.importer, o.line_number) for o in check.metadata["offences"]]
    assert check.kept == (not offences)
    return offences


def test_widget_imports_below_the_ui_break_it_in_both_spellings(tmp_path, monkeypatch):
    # QtCore is allowed, a type-only import never runs, and the ui is not a source.
    offences = _offences(tmp_path, monkeypatch, ["layered.low"])
    assert offences == [("layered.low.dotted", 1), ("layered.low.view", 2)]


def test_a_layer_without_widget_imports_keeps_it(tmp_path, monkeypatch):
    assert _offences(tmp_path, monkeypatch, ["layered.low.model", "layered.low.typed"]) == []
