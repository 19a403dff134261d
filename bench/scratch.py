"""Scratch folders for the benchmark and screenshot scripts, removed when the script exits.

Some scripts write hundreds of megabytes (a saved model, converted networks); left behind in /tmp after every
run they fill the disk of a small machine.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_folder(prefix: str) -> Path:
    """A new empty folder in the system's temporary folder, deleted with all it holds at interpreter exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder
