"""Tiled inference's per-project setting: stored in the project file with the engine's defaults, and
handed by the segmentation session to the inference worker, which sets it on the predictor."""

from __future__ import annotations

import numpy as np
import pytest
from fake_predictor import FakePredictor, open_with_fake_model
from PIL import Image

from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from maskrcnn_core.engine.tiling import TileOptions


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


def test_the_tile_setting_has_the_engines_defaults_and_survives_reopening(folder):
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        assert settings.tile_options() == TileOptions()  # auto, the engine's size and overlap
        settings.tile_mode, settings.tile_size, settings.tile_overlap = "on", 768, 96
    with ProjectStore.open(folder) as store:
        assert ProjectSettings(store).tile_options() == TileOptions(mode="on", size=768, overlap=96)


def test_bad_tile_values_are_refused_or_read_as_the_default(folder):
    with ProjectStore.open(folder) as store:
        settings = ProjectSettings(store)
        with pytest.raises(ValueError, match="tile_mode cannot be 'sometimes'"):
            settings.tile_mode = "sometimes"
        with pytest.raises(ValueError, match="tile_size cannot be 8"):
            settings.tile_size = 8
        store.set_setting("tile_overlap", "lots")  # a hand-edited file
        assert settings.tile_overlap == TileOptions.overlap
        # a size no larger than the overlap cannot tile: the pair reads as the defaults, the mode is kept
        settings.tile_mode, settings.tile_size, settings.tile_overlap = "on", 64, 100
        assert settings.tile_options() == TileOptions(mode="on")


class _RecordingPredictor(FakePredictor):
    """The fake model, noting the tiling it was asked to predict with."""

    def __init__(self) -> None:
        super().__init__()
        self.tilings: list[TileOptions | None] = []

    def predict(self, images, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.tilings.append(self.tiling)
        return super().predict(images, **kwargs)


@pytest.mark.gui
def test_the_worker_predicts_with_the_projects_tiling(qtbot, folder, tmp_path):
    Image.fromarray(np.full((120, 160, 3), 90, dtype=np.uint8)).save(folder / "a.png")
    predictor = _RecordingPredictor()
    window = open_with_fake_model(qtbot, folder, tmp_path, predictor)
    document = window.segmentation.document
    document.settings.tile_mode = "off"
    document.settings.tile_size = 1024
    window.segmentation.segment([image.id for image in document.images()])
    qtbot.waitUntil(lambda: bool(predictor.tilings), timeout=5000)
    assert predictor.tilings[-1] == TileOptions(mode="off", size=1024)
