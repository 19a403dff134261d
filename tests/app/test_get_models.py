"""Model ▸ Get models…: a real window, a real HTTP server on 127.0.0.1 serving a checkpoint named by its
hash, the download on a worker thread, and the model loaded through the registry (by the fake predictor).
Also ``--weights coco``: an alias resolves to its cached file, or says where to get it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_predictor import FakePredictor, open_with_fake_model
from weights_server import WeightsServer, catalogue_entry, closed_port, named_by_hash

from app.ui.get_models_dialog import DOWNLOADED, ERROR_STYLE, GetModelsDialog
from app.ui.main_window import MainWindow
from maskrcnn_core import downloads


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, WeightsServer]]:
    """A 3 MB stand-in checkpoint, served slowly enough to cancel; listed in the catalogue as "tiny"."""
    folder = tmp_path / "served"
    folder.mkdir()
    path = named_by_hash(os.urandom(3 * 1024 * 1024), folder)
    server = WeightsServer(folder, delay_per_chunk=0.01)
    monkeypatch.setenv(downloads.BASE_URL_ENV, server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setitem(downloads.CATALOGUE, "tiny", catalogue_entry(path))
    yield path, server
    server.close()


def cache_contents() -> list[str]:
    folder = downloads.hub_checkpoints_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_menu_opens_the_catalogue_with_sizes_scores_and_marks(qtbot, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = downloads.cached_path(downloads.CATALOGUE["coco"])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"already downloaded")
    window = MainWindow(predictor_factory=lambda _source: FakePredictor)
    qtbot.addWidget(window)
    shown: list[GetModelsDialog] = []
    monkeypatch.setattr(GetModelsDialog, "open", lambda dialog: shown.append(dialog))
    window.get_models_action.trigger()
    (dialog,) = shown
    rows = [[dialog.table.item(r, c).text() for c in range(dialog.table.columnCount())] for r in range(2)]
    assert rows[0][0] == "coco" and rows[0][2:] == ["170 MB", "37.9", "34.6", DOWNLOADED]
    assert rows[1][0] == "coco-v2" and rows[1][2:] == ["177 MB", "47.4", "41.8", ""]
    dialog.select("coco")
    assert dialog.download_button.text() == "Load"
    dialog.select("coco-v2")
    assert dialog.download_button.text() == "Download"


def test_download_in_the_dialog_then_the_model_loads(qtbot, tmp_path, images_folder, served) -> None:
    path, _server = served
    predictor = FakePredictor()
    window = open_with_fake_model(qtbot, images_folder, tmp_path, predictor)
    dialog = GetModelsDialog(window.registry, window)
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    progress: list[tuple[int, int]] = []
    dialog.download_selected()
    assert dialog.worker is not None and not dialog.download_button.isEnabled()  # it runs on its own thread
    dialog.worker.progress.connect(lambda done, total: progress.append((done, total)))
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=20_000)
    downloaded = downloads.hub_checkpoints_dir() / path.name
    assert downloaded.read_bytes() == path.read_bytes() and cache_contents() == [path.name]
    assert progress and progress[-1] == (path.stat().st_size, path.stat().st_size)
    assert dialog.status_of("tiny") == DOWNLOADED
    # loaded through the registry: it becomes a version of the project and the active model
    qtbot.waitUntil(
        lambda: (
            any(v.path == str(downloaded) for v in window.registry.versions())
            and window.registry.active() is not None
            and window.registry.active().path == str(downloaded)
        ),
        timeout=10_000,
    )
    assert window.segmentation.model is not None


def test_cancel_in_the_dialog_leaves_nothing(qtbot, tmp_path, images_folder, served) -> None:
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    dialog = GetModelsDialog(window.registry, window)
    qtbot.addWidget(dialog)
    dialog.select("tiny")
    dialog.download_selected()
    worker = dialog.worker
    assert worker is not None
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=10_000)
    with qtbot.waitSignal(worker.cancelled, timeout=10_000):
        dialog.cancel_button.click()
    assert dialog.worker is None and "cancelled" in dialog.message.text()
    assert cache_contents() == []
    assert all(v.path is None or "tiny" not in v.path for v in window.registry.versions())


def test_no_network_is_one_line_in_the_dialog(qtbot, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(downloads.BASE_URL_ENV, f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dialog = GetModelsDialog(None)
    qtbot.addWidget(dialog)
    dialog.select("coco-v2")
    dialog.download_selected()
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=10_000)
    text = dialog.message.text()
    assert "cannot download" in text and str(downloads.hub_checkpoints_dir()) in text and "\n" not in text
    assert dialog.message.styleSheet() == ERROR_STYLE
    assert dialog.download_button.isEnabled() and cache_contents() == []


def test_weights_coco_uses_the_cached_file_or_points_to_get_models(
    qtbot, tmp_path, images_folder, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sources: list[str] = []

    def factory(source: str):  # noqa: ANN202
        sources.append(source)
        return FakePredictor

    window = MainWindow(predictor_factory=factory)
    qtbot.addWidget(window)
    window.show()
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    assert window.open_folder(images_folder, weights="coco")
    said = [m for m in messages if "not downloaded yet" in m]
    assert said and all("Get models" in m and "Load weights" not in m for m in said)  # one hint
    assert all("Model file not found" not in m for m in messages)

    cached = downloads.cached_path(downloads.CATALOGUE["coco"])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stands for the COCO file: the fake predictor ignores it")
    window.load_model("coco-v2")  # still not downloaded: a message, nothing loads
    window.load_model("coco")
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=10_000)
    assert sources[-1] == str(cached)
