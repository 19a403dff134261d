"""An import-linter contract for one part of an external package, e.g. "no QtWidgets below the UI".

import-linter's own contracts see an external package only as a whole (``PySide6``), so they cannot say
"QtCore and QtGui, but not QtWidgets". This contract reads the import statements themselves: a source
module breaks it when one of its imports of the package names a forbidden submodule, as
``import PySide6.QtWidgets``, ``from PySide6.QtWidgets import QWidget`` or ``from PySide6 import QtWidgets``.
Only direct imports are checked: the layers contract already keeps the widget layer out of the modules
below it. Registered in pyproject.toml's ``[tool.importlinter]`` under ``contract_types``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain import helpers


@dataclass(frozen=True)
class _Offence:
    importer: str
    line_number: int
    line_contents: str


def _names_submodule(line: str, package: str, submodule: str) -> bool:
    """Whether an import statement's first line imports ``package.submodule`` (or a name inside it)."""
    pkg, sub = re.escape(package), re.escape(submodule)
    dotted = re.search(rf"\b{pkg}\.{sub}\b", line) is not None
    from_package = re.match(rf"\s*from\s+{pkg}\s+import\b.*\b{sub}\b", line) is not None
    return dotted or from_package


class ForbiddenExternalSubmodulesContract(Contract):
    """Source modules must not import the listed submodules of external packages (``PySide6.QtWidgets``).

    Options:
        - source_modules:    modules (with their descendants) that must not import the submodules.
        - forbidden_modules: dotted names ``package.submodule`` of external packages.
    """

    type_name = "forbidden_external_submodules"

    source_modules = fields.SetField(subfield=fields.ModuleExpressionField())
    forbidden_modules = fields.SetField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        sources = helpers.module_expressions_to_modules(
            graph,
            self.source_modules,
            as_packages=True,
            raise_if_unmatched=True,
        )
        offences: list[_Offence] = []
        for forbidden in sorted(self.forbidden_modules):
            package, _, submodule = forbidden.partition(".")
            if not submodule:
                raise ValueError(f"{forbidden!r} is not a submodule: write it as package.submodule")
            for source in sorted(sources, key=lambda module: module.name):
                if package not in graph.modules:
                    continue
                for detail in graph.get_import_details(importer=source.name, imported=package):
                    if _names_submodule(detail["line_contents"], package, submodule):
                        offences.append(_Offence(source.name, detail["line_number"], detail["line_contents"]))
        return ContractCheck(kept=not offences, warnings=[], metadata={"offences": offences})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for offence in check.metadata["offences"]:
            output.print_error(
                f"{offence.importer} (l.{offence.line_number}): {offence.line_contents}", bold=False
            )
        output.new_line()
