"""Fixtures for the app tests: private user dirs and a synthetic images folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_user_dirs(tmp_path, monkeypatch):
    """Recent folders, remembered project locations and the demo cache go to the test's own dirs."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A small synthetic COCO dataset: returns the JSON path; images are in ``<parent>/images``."""
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_images=6, seed=3)


@pytest.fixture
def images_folder(tmp_path, synthetic_dataset) -> Path:
    """A private copy of the synthetic images (the project is created inside it)."""
    folder = tmp_path / "images"
    shutil.copytree(synthetic_dataset.parent / "images", folder)
    return folder
