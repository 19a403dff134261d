"""Settings for the whole test session: Qt renders offscreen, and torch uses one thread.

The suite runs on 2 shared cores; torch's default of one thread per core oversubscribes them as soon as
anything else runs beside it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Read when the first QApplication is created, so setting it here (before any test runs) is early enough.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Read by torch's OpenMP pool when torch is first imported, here and in every subprocess a test starts
# (command-line runs, the training process), which torch.set_num_threads below cannot reach.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The CPU backend keeps converted networks in the user's cache folder: the suite gets its own, shared by its
# tests (a model converted once serves every test that loads it) and by the processes they start.
_CACHE = tempfile.mkdtemp(prefix="maskrcnn-test-cache-")
os.environ["MASKRCNN_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Pin torch to one thread before each test's fixtures run, once a test module has imported torch.

    torch is looked up, never imported, here: GUI-only runs don't pay for loading it, and the tests that
    check the app never loads torch are not fooled by the test runner itself.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
