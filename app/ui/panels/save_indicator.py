"""The status bar's sign that the work is saved: every edit is committed to the project file as it is made,
and this label says so ("All changes saved · 14:02:31"), or that a write is waiting for the file, or that one
failed (in red, the reason in full in its tooltip)."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtWidgets import QLabel, QWidget

SAVED = "All changes saved"
SAVING = "Saving…"
FAILED = "Save failed"


class SaveIndicator(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._failed_style = False
        self.clear()

    def _set_failed_style(self, failed: bool) -> None:
        # Setting a style sheet re-polishes the label even when it is the same one, and a run over the folder
        # saves one result after another: the style changes only when the state does.
        if failed != self._failed_style:
            self._failed_style = failed
            self.setStyleSheet("color: #d32f2f;" if failed else "")

    def show_saved(self, when: datetime | None = None) -> None:
        """The last write is committed (at ``when``; ``None``: nothing written since the project opened)."""
        self._set_failed_style(False)
        self.setText(SAVED if when is None else f"{SAVED} · {when:%H:%M:%S}")
        self.setToolTip("Every change is written to the project file as it is made")

    def show_saving(self, reason: str) -> None:
        """A write is waiting (``reason``: for what)."""
        self._set_failed_style(False)
        self.setText(SAVING)
        self.setToolTip(reason)

    def show_failed(self, error: str) -> None:
        """A write was refused: the project file holds what it held before it."""
        self._set_failed_style(True)
        first_line = error.splitlines()[0] if error else "unknown error"
        self.setText(f"{FAILED}: {first_line}")
        self.setToolTip(f"{FAILED}: {error}\nThe project file still holds everything saved before.")

    def clear(self) -> None:
        """No project open."""
        self._set_failed_style(False)
        self.setText("")
        self.setToolTip("")
