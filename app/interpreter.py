"""Interpreter settings that keep the GUI thread responsive while worker threads run Python code.

The GUI thread shares the GIL with the threads that load models and run inference. Qt calls made from
Python release the GIL, and a thread that wants it back waits for the holder's switch interval: 5 ms by
default. A paint event makes hundreds of Qt calls, so while a model is being built in a worker thread a
chart repaint took 90-140 ms (`app/stall_probe.py` caught it in ``CurveChart._draw_curve``); with a 1 ms
interval the same paint takes a few ms.

A full garbage collection walks every object the process holds. Once torch is imported and a model
built that is about 360,000 objects, and a walk took 190-240 ms on the GUI thread of a 2-core machine,
at a moment nobody chooses. Nearly all of them (modules, classes, the libraries' tables) live as long as
the process, so once a model is loaded they are frozen out of the collector's walks (once). Objects
made later are collected as usual; a frozen object that later becomes garbage is still freed by
reference counting unless it sits in a reference cycle.
"""

from __future__ import annotations

import gc
import sys

GUI_SWITCH_INTERVAL_S = 0.0005


def configure_for_gui() -> None:
    """Hand the GIL over every millisecond instead of every 5 ms."""
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)


def freeze_long_lived_heap() -> None:
    """Move every object alive now out of the collector's walks, unless that was done already."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
