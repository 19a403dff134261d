"""Interpreter settings that keep the GUI thread responsive while worker threads run Python code.

The GUI thread shares the GIL with the threads that load models and run inference. Qt calls made from
Python release the GIL, and calls from Qt into Python must take it back: each waits up to the holder's
switch interval, 5 ms by default. A relayout makes hundreds of such calls, so while a thread ran Python,
showing the fine-tune comparison stalled the GUI thread 177-305 ms; 67-80 ms at a 1 ms interval, 51-53 ms
at 0.5 ms, and going lower gained little (see ``docs/adr/0004-threading-model.md`` for the rest of the fix).

A full garbage collection walks every object the process holds. Once torch is imported and a model
built that is about 360,000 objects, and a walk took 190-240 ms on the GUI thread of a 2-core machine,
at a moment nobody chooses. Nearly all of them (modules, classes, the libraries' tables) live as long as
the process, so once a model is loaded they are frozen out of the collector's walks (once). Objects
made later are collected as usual; a frozen object that later becomes garbage is still freed by
reference counting unless it sits in a reference cycle. ``gc.freeze()`` itself is cheap (it splices
lists), but ``gc.get_freeze_count()`` walks every frozen object: 40-98 ms on the GUI thread, so whether
the heap was frozen is kept in a flag instead of asked of the collector.
"""

from __future__ import annotations

import gc
import sys

GUI_SWITCH_INTERVAL_S = 0.0005  # seconds
_heap_frozen = False


def configure_for_gui() -> None:
    """Hand the GIL over every 0.5 ms instead of every 5 ms."""
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)


def freeze_long_lived_heap() -> None:
    """Move every object alive now out of the collector's walks, the first time it is called."""
    global _heap_frozen
    if not _heap_frozen:
        gc.freeze()
        _heap_frozen = True
