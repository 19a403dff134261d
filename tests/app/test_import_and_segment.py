"""Annotations imported into an auto-segmented folder, and ``maskrcnn-studio segment``, end to end.

The predictions are the bundled demo model's (``app/resources/models/demo.pt``) on synthetic images, made by
the ``segment`` command; the projects are real SQLite files; exports are read back with pycocotools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fake_predictor import FakePredictor
from pycocotools.coco import COCO
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.__main__ import main
from app.project.coco_io import export_coco, import_annotations
from app.project.model_sources import DEMO_MODEL
from app.project.records import ImageStatus, Provenance
from app.project.store import ProjectStore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet"
)


@pytest.fixture(scope="module")
def segmented_once(tmp_path_factory, synthetic_dataset) -> Path:
    """The synthetic images, auto-segmented once by ``maskrcnn-studio segment`` with the demo model."""
    folder = tmp_path_factory.mktemp("segmented") / "images"
    shutil.copytree(synthetic_dataset.parent / "images", folder)
    assert main(["segment", str(folder), "--weights", str(DEMO_MODEL), "--batch-size", "2"]) == 0
    return folder


@pytest.fixture
def segmented(segmented_once, tmp_path) -> Path:
    """A private copy of the auto-segmented folder, its project included."""
    folder = tmp_path / "images"
    shutil.copytree(segmented_once, folder)
    return folder


def _predicted_counts(store: ProjectStore) -> dict[str, int]:
    return {
        image.file_name: sum(r.provenance is Provenance.PREDICTED for r in store.instances(image.id))
        for image in store.images()
    }


def _objects(coco: COCO) -> list[tuple[str, str, bytes]]:
    """Every annotation of a COCO file as (file name, category name, mask bytes), sorted."""
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    files = {image["id"]: image["file_name"] for image in coco.loadImgs(coco.getImgIds())}
    return sorted(
        (files[a["image_id"]], names[a["category_id"]], coco.annToMask(a).tobytes())
        for a in coco.loadAnns(coco.getAnnIds())
    )


def test_import_into_an_auto_segmented_folder_replaces_the_predictions(
    segmented, synthetic_dataset, tmp_path, capsys
):
    truth = COCO(str(synthetic_dataset))
    with ProjectStore.open(segmented) as store:
        predicted = _predicted_counts(store)
    assert all(predicted.values())  # the model found something on every image
    capsys.readouterr()

    assert main(["import", str(segmented), str(synthetic_dataset)]) == 0
    out = capsys.readouterr().out
    assert f"imported {len(truth.getAnnIds())} annotations on {len(truth.getImgIds())} images" in out
    assert f"replaced {sum(predicted.values())} predictions" in out
    assert "0 duplicates" in out
    with ProjectStore.open(segmented) as store:
        assert {r.provenance for r in store.instances()} == {Provenance.IMPORTED}  # no doubles
        assert len(store.instances()) == len(truth.getAnnIds())
        assert {image.status for image in store.images()} == {ImageStatus.CORRECTED}
        export = export_coco(store, tmp_path / "export.json")
    assert export.annotations == len(truth.getAnnIds())
    assert _objects(COCO(str(tmp_path / "export.json"))) == _objects(truth)

    # The same file again: every annotation is a duplicate, said so, and nothing changes.
    assert main(["import", str(segmented), str(synthetic_dataset)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 annotations" in out and "replaced 0 predictions" in out
    assert f"{len(truth.getAnnIds())} duplicates" in out
    with ProjectStore.open(segmented) as store:
        assert len(store.instances()) == len(truth.getAnnIds())


def test_exact_duplicates_in_the_file_are_counted_not_dropped_silently(
    segmented, synthetic_dataset, tmp_path
):
    data = json.loads(synthetic_dataset.read_text())
    copy = dict(data["annotations"][0], id=max(a["id"] for a in data["annotations"]) + 1)
    data["annotations"].append(copy)
    path = tmp_path / "twice.json"
    path.write_text(json.dumps(data))
    with ProjectStore.open(segmented) as store:
        summary = import_annotations(store, path)
        assert (summary.added, summary.duplicates) == (len(data["annotations"]) - 1, 1)
        assert "1 duplicates of annotations already there were not added again" in summary.headline()
        assert len(store.instances()) == len(data["annotations"]) - 1


def test_a_persons_instances_survive_an_import(segmented, synthetic_dataset, tmp_path):
    with ProjectStore.open(segmented) as store:
        first, second = store.images()[:2]
        kept = store.instances(first.id)[0]
        store.apply_edit(first.id, update=[replace(kept, provenance=Provenance.EDITED)])
        store.set_verified(second.id, True)
        untouched = sum(_predicted_counts(store).values())
        summary = import_annotations(store, synthetic_dataset)
        assert summary.replaced == untouched and sum(_predicted_counts(store).values()) == 0
        assert store.instances(first.id)[0] == replace(
            kept, provenance=Provenance.EDITED, updated_at=store.instances(first.id)[0].updated_at
        )
        assert store.image(second.id).status is ImageStatus.VERIFIED
        assert {r.provenance for r in store.instances(second.id)} == {Provenance.IMPORTED}
        export = export_coco(store, tmp_path / "export.json")
    assert export.annotations == len(COCO(str(synthetic_dataset)).getAnnIds()) + 1  # the edited one


@pytest.mark.gui
def test_file_import_in_the_window_goes_through_the_document(
    qtbot, segmented, synthetic_dataset, tmp_path, monkeypatch
):
    from app.ui.main_window import MainWindow

    window = MainWindow(predictor_factory=lambda _source: lambda: FakePredictor())
    qtbot.addWidget(window)
    weights = tmp_path / "fake.pt"
    weights.write_bytes(b"not a checkpoint: the fake predictor ignores it")
    assert window.open_folder(segmented, weights=str(weights))
    qtbot.waitUntil(window.canvas.has_image, timeout=10_000)
    doc = window.document
    current = doc.current_image_id
    predicted = _predicted_counts(doc.store)
    assert {r.provenance for r in doc.instances(current)} == {Provenance.PREDICTED}  # cached before

    shown: list[str] = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(synthetic_dataset), ""))
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text, *a: shown.append(text))
    window.import_action.trigger()

    assert len(shown) == 1 and f"replaced {sum(predicted.values())} predictions" in shown[0]
    assert doc.current_image_id == current  # the views keep their place
    for image in doc.images():  # the document's own caches, refreshed by its import
        assert doc.instances(image.id) == doc.store.instances(image.id)
        assert image == doc.store.image(image.id)
        assert image.status is ImageStatus.CORRECTED
    assert {r.provenance for r in doc.instances(current)} == {Provenance.IMPORTED}
    want = sorted(r.id for r in doc.visible_instances(current))
    qtbot.waitUntil(lambda: sorted(window.canvas.instance_ids()) == want, timeout=10_000)
    export = export_coco(doc.store, tmp_path / "export.json")
    assert export.annotations == len(COCO(str(synthetic_dataset)).getAnnIds())
    window.close()


def test_segment_end_to_end_leaves_a_persons_images_alone(tmp_path, synthetic_dataset, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("train_000000.png", "train_000001.png", "train_000002.png"):
        shutil.copy(synthetic_dataset.parent / "images" / name, folder / name)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = subprocess.run(
        [sys.executable, "-m", "app", "segment", str(folder)],  # the default model: the bundled one
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "segmented 3 images" in run.stdout
    assert "3/3" in run.stderr  # the progress bar
    with ProjectStore.open(folder) as store:
        (version,) = store.model_versions()
        assert Path(version.path).resolve() == DEMO_MODEL.resolve()
        verified, corrected, predicted = store.images()
        assert {image.status for image in store.images()} == {ImageStatus.PREDICTED}
        assert all(
            r.provenance is Provenance.PREDICTED and r.model_version_id == version.id
            for r in store.instances()
        )
        store.set_verified(verified.id, True)
        store.apply_edit(corrected.id, delete=[store.instances(corrected.id)[0].id])
        before = {image.id: store.instances(image.id) for image in store.images()}

    assert main(["segment", str(folder)]) == 0  # again: the project's model, the same version
    out = capsys.readouterr().out
    assert "segmented 1 images" in out and "left 2 corrected or verified images alone" in out
    with ProjectStore.open(folder) as store:
        assert len(store.model_versions()) == 1
        assert store.instances(verified.id) == before[verified.id]
        assert store.instances(corrected.id) == before[corrected.id]
        again = store.instances(predicted.id)
        # Replaced by the new run's (the same deterministic model: the same masks, written anew).
        assert again and min(r.created_at for r in again) > max(r.created_at for r in before[predicted.id])
        assert [(r.category_id, r.rle) for r in again] == [
            (r.category_id, r.rle) for r in before[predicted.id]
        ]
        assert [image.status for image in store.images()] == [
            ImageStatus.VERIFIED,
            ImageStatus.CORRECTED,
            ImageStatus.PREDICTED,
        ]


def test_segment_bad_input_is_one_line_and_loses_nothing(segmented, tmp_path, capsys):
    with ProjectStore.open(segmented) as store:
        before = store.instances()
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err
    assert main(["segment", str(segmented), "--weights", str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pt: no such file" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["segment", str(segmented), "--weights", str(garbage)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("maskrcnn-studio segment: cannot load the model")
    with pytest.raises(SystemExit) as usage:
        main(["segment", str(segmented), "--batch-size", "0"])
    assert usage.value.code == 2
    with ProjectStore.open(segmented) as store:
        assert store.instances() == before
        assert len(store.model_versions()) == 1  # the unloadable file did not become a version
