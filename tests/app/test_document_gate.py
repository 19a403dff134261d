"""The document is the only gate to the store: no widget reaches the store, not even through an attribute.

The import contract keeps ``app.ui`` from importing ``app.project.store``; this check closes the other way
in, ``document.store`` (or any ``.store``) used from widget code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import app

UI_DIR = Path(app.__file__).resolve().parent / "ui"


def store_accesses(source: str) -> list[int]:
    """Line numbers where ``source`` reads or writes an attribute named ``store`` or ``_store``."""
    tree = ast.parse(source)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("store", "_store")
    ]


def test_the_check_finds_a_store_reached_through_the_document():
    source = "def f(window):\n    doc = window.document\n    return doc.store.images()\n"
    assert store_accesses(source) == [3]
    assert store_accesses("def f(doc):\n    return doc.images()\n") == []


def test_no_widget_code_touches_the_store():
    offences = {
        str(path.relative_to(UI_DIR)): lines
        for path in sorted(UI_DIR.rglob("*.py"))
        if (lines := store_accesses(path.read_text(encoding="utf-8")))
    }
    assert len(list(UI_DIR.rglob("*.py"))) > 10  # the walk really saw the widget layer
    assert offences == {}, f"widget code reaches the store directly (use the document): {offences}"
