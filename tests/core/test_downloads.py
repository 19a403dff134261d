"""Downloading pretrained weights from a real HTTP server on 127.0.0.1: checked, atomic, cancellable, and
leaving nothing behind when anything goes wrong."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tiny_model import TINY
from weights_server import WeightsServer, catalogue_entry, closed_port, named_by_hash

from maskrcnn_core import downloads, load_model, mask_rcnn_mobilenet_v2_fpn
from maskrcnn_core.cancel import CancelToken
from maskrcnn_core.cli import main
from maskrcnn_core.model.weights import save_checkpoint
from maskrcnn_core.protocol import ExitCode


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(3, **TINY)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model)
    return path.read_bytes()


@pytest.fixture
def served(tmp_path: Path, checkpoint_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A checkpoint named by its hash on a local server; the cache is ``tmp_path/torch``."""
    folder = tmp_path / "served"
    folder.mkdir()
    path = named_by_hash(checkpoint_bytes, folder)
    server = WeightsServer(folder)
    monkeypatch.setenv(downloads.BASE_URL_ENV, server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield path
    server.close()


def cache_contents() -> list[str]:
    folder = downloads.hub_checkpoints_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_catalogue_names_torchvisions_coco_files_and_their_hashes() -> None:
    v1, v2 = downloads.CATALOGUE["coco"], downloads.CATALOGUE["coco-v2"]
    assert (v1.filename, v1.sha256_prefix, v1.box_ap, v1.mask_ap) == (
        "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        "bf2d0c1e",
        37.9,
        34.6,
    )
    assert (v2.sha256_prefix, v2.box_ap, v2.mask_ap) == ("73cbd019", 47.4, 41.8)
    assert 160 < v1.size_mb < 180
    assert downloads.url_of(v2).startswith("https://download.pytorch.org/models/")


def test_download_writes_a_checked_loadable_file(served: Path) -> None:
    weights = catalogue_entry(served)
    seen: list[tuple[int, int]] = []
    path = downloads.download(weights, progress=lambda done, total: seen.append((done, total)))
    assert path == downloads.hub_checkpoints_dir() / served.name
    assert path.read_bytes() == served.read_bytes()
    assert seen[-1] == (served.stat().st_size, served.stat().st_size)
    assert cache_contents() == [served.name]  # no temporary file left beside it
    assert load_model(path).config.num_classes == 3


def test_a_file_that_fails_its_hash_is_refused_and_nothing_kept(served: Path) -> None:
    wrong = served.with_name("tiny_maskrcnn-0badc0de.pth")
    wrong.write_bytes(served.read_bytes())
    with pytest.raises(downloads.DownloadError, match="checksum"):
        downloads.download(catalogue_entry(wrong))
    assert cache_contents() == []


def test_a_truncated_download_is_refused_and_nothing_kept(served: Path) -> None:
    """Corruption in transit: the served file lost its tail, the name still carries the full file's hash."""
    served.write_bytes(served.read_bytes()[:-1000])
    with pytest.raises(downloads.DownloadError, match="checksum"):
        downloads.download(catalogue_entry(served))
    assert cache_contents() == []


def test_cancel_stops_the_download_and_leaves_nothing(served: Path) -> None:
    cancel = CancelToken()

    def cancel_after_first_chunk(done: int, total: int) -> None:
        if done > 0:
            cancel.cancel()

    with pytest.raises(downloads.DownloadCancelled):
        downloads.download(catalogue_entry(served), progress=cancel_after_first_chunk, cancel=cancel)
    assert cache_contents() == []


def test_no_network_names_the_url_and_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}/models/"
    monkeypatch.setenv(downloads.BASE_URL_ENV, url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(downloads.DownloadError) as info:
        downloads.download(downloads.CATALOGUE["coco-v2"])
    message = str(info.value)
    assert url + "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth" in message
    assert str(downloads.hub_checkpoints_dir()) in message and "\n" not in message
    assert cache_contents() == []


def test_an_unwritable_cache_folder_is_a_clear_error(served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = served.parent / "a_file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TORCH_HOME", str(blocker / "torch"))
    with pytest.raises(downloads.DownloadError, match="cannot write to the weights folder .*a_file"):
        downloads.download(catalogue_entry(served))


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    class FullDisk:
        """The temporary file on a disk with no space left: every write fails as the OS would fail it."""

        def __init__(self, file: io.BufferedWriter) -> None:
            self.file = file

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc_info: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = downloads.os.fdopen
    monkeypatch.setattr(downloads.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(downloads.DownloadError, match="not enough disk space"):
        downloads.download(catalogue_entry(served))
    assert cache_contents() == []


def test_cli_lists_and_downloads_against_the_local_server(
    served: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(downloads.CATALOGUE, "tiny", catalogue_entry(served))
    assert main(["weights", "list"]) == ExitCode.OK
    listed = capsys.readouterr().out
    assert "coco-v2" in listed and "box AP 47.4 / mask AP 41.8" in listed
    assert [line.split()[-1] for line in listed.splitlines() if line.startswith("tiny")] == ["no"]

    assert main(["weights", "download", "tiny"]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert out.strip() == str(downloads.hub_checkpoints_dir() / served.name)
    assert "tiny" in err  # the progress bar, on stderr
    assert main(["weights", "list"]) == ExitCode.OK
    listed = capsys.readouterr().out
    assert [line.split()[-1] for line in listed.splitlines() if line.startswith("tiny")] == ["yes"]

    assert main(["weights", "download", "nonesuch"]) == ExitCode.BAD_INPUT
    assert capsys.readouterr().err.strip().startswith("error: unknown weights 'nonesuch'")


def test_cli_download_without_network_is_one_line_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(downloads.BASE_URL_ENV, f"http://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["weights", "download", "coco"]) == ExitCode.FAILED
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cannot download" in lines[0]


@pytest.mark.parametrize("url", ["not a url", "ftp://mirror.example/models/", "http://", "models/"])
def test_a_malformed_base_url_is_refused_before_any_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv(downloads.BASE_URL_ENV, url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        downloads.DownloadError, match=f"{downloads.BASE_URL_ENV}=.* is not a download address"
    ):
        downloads.download(downloads.CATALOGUE["coco"])
    assert not (tmp_path / "torch").exists() or cache_contents() == []
