"""The files the app ships with (the demo model, the window icon; styles as they come), as package data.

Found through :mod:`importlib.resources`, so the same code finds them in a checkout, in the editable install
``scripts/setup.sh`` makes, and in an installed wheel (pyproject.toml's package-data carries them). No Qt,
no torch: every layer may ask where a file is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_file(*parts: str) -> Path:
    """The shipped file at ``parts`` below this package, e.g. ``resource_file("models", "demo.pt")``.

    A path on disk (whether the file exists is the caller's to check): pip installs packages as folders,
    never zipped, and torch and Qt open files by name."""
    return Path(str(files(__name__).joinpath(*parts)))


# Trained on the synthetic shapes by scripts/train_demo_model.sh.
DEMO_MODEL = resource_file("models", "demo.pt")
# The application's icon (window, task bar): an image with two segmented objects.
APP_ICON = resource_file("icons", "app.svg")
