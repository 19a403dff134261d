"""Bad input to the app's command line and file readers: one line naming the file, nothing lost, no hang."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.__main__ import main
from app.project.folder_scan import scan_folder
from app.project.store import ProjectStore
from app.workers import image_loader
from maskrcnn_core.image_io import ImageReadError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


@pytest.fixture
def imported(images_folder: Path, synthetic_dataset: Path, capsys) -> Path:
    assert main(["import", str(images_folder), str(synthetic_dataset)]) == 0
    capsys.readouterr()
    return images_folder


def _project_files(folder: Path) -> dict[str, bytes]:
    project = folder / ".maskrcnn-studio"
    return {p.name: p.read_bytes() for p in sorted(project.iterdir()) if p.is_file()}


def test_export_into_the_project_folder_is_refused_and_the_database_kept(imported: Path, capsys) -> None:
    before = _project_files(imported)
    db = next(name for name in before if name.endswith(".sqlite"))
    for out in (imported / ".maskrcnn-studio" / db, imported / ".maskrcnn-studio" / "export.json"):
        assert main(["export", str(imported), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "project folder" in err and len(err.strip().splitlines()) == 1
    assert _project_files(imported) == before
    with ProjectStore.open(imported) as store:
        assert store.instances()


def test_export_into_a_project_kept_elsewhere_is_refused(
    images_folder: Path, synthetic_dataset: Path, tmp_path: Path, capsys
) -> None:
    elsewhere = tmp_path / "kept-here"
    common = ["--project-dir", str(elsewhere)]
    assert main(["import", str(images_folder), str(synthetic_dataset), *common]) == 0
    assert main(["export", str(images_folder), "--out", str(elsewhere / "x.json"), *common]) == 1
    assert "project folder" in capsys.readouterr().err
    assert not (elsewhere / "x.json").exists()


def test_export_to_an_unwritable_out_is_one_line(imported: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out, fragment in ((blocker / "out.json", "is a file"), (tmp_path, "is a directory")):
        assert main(["export", str(imported), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert fragment in err and str(out) in err and "Traceback" not in err


@needs_fifo
def test_the_folder_scan_marks_a_pipe_called_png_and_lists_gifs(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "still.gif")
    (tmp_path / "empty.png").write_bytes(b"")
    scan = scan_folder(tmp_path)
    assert scan.file_names == ["empty.png", "still.gif", "x.png"]
    assert "not a regular file" in scan.errors["x.png"]
    assert "empty" in scan.errors["empty.png"]
    assert "still.gif" not in scan.errors


@needs_fifo
def test_thumbnails_refuse_a_pipe_without_opening_it(tmp_path: Path) -> None:
    pipe = tmp_path / "x.png"
    os.mkfifo(pipe)
    with pytest.raises(ImageReadError, match="not a regular file"):
        image_loader.read_thumbnail(pipe)


def test_thumbnails_obey_the_pixel_limit_of_the_tiled_view(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(path)
    assert image_loader.read_thumbnail(path)[1] == (40, 50)
    monkeypatch.setattr(image_loader, "TILED_MAX_PIXELS", 40 * 50 - 1)
    with pytest.raises(ImageReadError, match="larger than the limit"):
        image_loader.read_thumbnail(path)


def _huge_category_id(coco: dict) -> None:
    old = coco["categories"][0]["id"]
    coco["categories"][0]["id"] = 2**64 + 1
    for ann in coco["annotations"]:
        if ann["category_id"] == old:
            ann["category_id"] = 2**64 + 1


@pytest.mark.parametrize("case", ["id-beyond-64-bits", "nested-too-deeply", "named-pipe"])
def test_import_of_a_bad_file_is_one_message_and_changes_nothing(
    imported: Path, synthetic_dataset: Path, tmp_path: Path, capsys, case: str
) -> None:
    before = _project_files(imported)
    bad = tmp_path / "bad.json"
    if case == "id-beyond-64-bits":
        coco = json.loads(synthetic_dataset.read_text())
        _huge_category_id(coco)
        bad.write_text(json.dumps(coco))
        fragment = "does not fit in 64 bits"
    elif case == "nested-too-deeply":
        bad.write_text("[" * 100_000 + "]" * 100_000)
        fragment = "nested too deeply"
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("named pipes are POSIX")
        os.mkfifo(bad)
        fragment = "not a regular file"
    assert main(["import", str(imported), str(bad)]) == 1
    err = capsys.readouterr().err
    assert fragment in err and str(bad) in err and "Traceback" not in err
    assert _project_files(imported) == before
