"""``maskrcnn-studio import`` / ``export`` without a display, checked against pycocotools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from app.__main__ import main
from app.project.records import ImageStatus, Provenance
from app.project.store import ProjectStore

ROOT = Path(__file__).resolve().parents[2]


def _masks_by_file(coco: COCO) -> dict[str, list[tuple[str, np.ndarray]]]:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    out = {}
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        out[image["file_name"]] = sorted(
            ((names[a["category_id"]], coco.annToMask(a)) for a in anns), key=lambda t: (t[0], t[1].tobytes())
        )
    return out


def test_import_then_export_round_trips_through_pycocotools(
    images_folder, synthetic_dataset, tmp_path, capsys
):
    assert main(["import", str(images_folder), str(synthetic_dataset)]) == 0
    assert "imported" in capsys.readouterr().out
    original = COCO(str(synthetic_dataset))
    with ProjectStore.open(images_folder) as store:
        assert len(store.instances()) == len(original.getAnnIds())
        assert {i.status for i in store.images()} == {ImageStatus.CORRECTED}
        assert {r.provenance for r in store.instances()} == {Provenance.IMPORTED}
    # Importing again adds nothing.
    assert main(["import", str(images_folder), str(synthetic_dataset)]) == 0
    with ProjectStore.open(images_folder) as store:
        assert len(store.instances()) == len(original.getAnnIds())

    out = tmp_path / "out" / "export.json"
    out.parent.mkdir()
    assert main(["export", str(images_folder), "--out", str(out)]) == 0
    exported = COCO(str(out))
    assert _same_masks(_masks_by_file(exported), _masks_by_file(original))
    for ann in exported.loadAnns(exported.getAnnIds()):
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"], dict)
    assert [p.name for p in out.parent.iterdir()] == ["export.json"]  # no temporary file left behind


def _same_masks(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for name in a:
        if [(c, m.tobytes()) for c, m in a[name]] != [(c, m.tobytes()) for c, m in b[name]]:
            return False
    return True


def test_polygon_export_loads_and_matches_closely(images_folder, synthetic_dataset, tmp_path):
    assert main(["import", str(images_folder), str(synthetic_dataset)]) == 0
    out = tmp_path / "poly.json"
    assert main(["export", str(images_folder), "--out", str(out), "--format", "polygon"]) == 0
    exported, original = COCO(str(out)), COCO(str(synthetic_dataset))
    assert any(isinstance(a["segmentation"], list) for a in exported.loadAnns(exported.getAnnIds()))
    got, want = _masks_by_file(exported), _masks_by_file(original)
    for name in want:
        for (cat_a, mask_a), (cat_b, mask_b) in zip(
            sorted(got[name], key=lambda t: (t[0], int(t[1].sum()))),
            sorted(want[name], key=lambda t: (t[0], int(t[1].sum()))),
            strict=True,
        ):
            inter = np.logical_and(mask_a, mask_b).sum()
            union = np.logical_or(mask_a, mask_b).sum()
            assert cat_a == cat_b and inter / union > 0.8


def test_export_leaves_out_new_images_and_low_scores(images_folder, tmp_path):
    with ProjectStore.open(images_folder) as store:
        store.add_images(["train_000000.png", "train_000001.png"])
        (cat,) = store.ensure_categories(["thing"]).values()
        image_id = store.image_by_name("train_000000.png").id
        from pycocotools import mask as mask_utils

        from app.project.records import NewInstance

        full = np.zeros((192, 256), dtype=np.uint8)
        full[10:20, 10:30] = 1
        rle = mask_utils.encode(np.asfortranarray(full))
        rle["counts"] = rle["counts"].decode()
        preds = [
            NewInstance(cat, rle, (10, 10, 30, 20), 200, Provenance.PREDICTED, score=s) for s in (0.9, 0.2)
        ]
        store.apply_prediction(
            image_id, expected_revision=0, instances=preds, model_version_id=None, image_size=(192, 256)
        )
    out = tmp_path / "x.json"
    assert main(["export", str(images_folder), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["train_000000.png"]
    assert len(data["annotations"]) == 1
    assert main(["export", str(images_folder), "--out", str(out), "--score-threshold", "0.1"]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 2


def test_bad_input_is_one_clear_line_and_status_1(images_folder, tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert main(["import", str(images_folder), str(missing)]) == 1
    assert "maskrcnn-studio import:" in capsys.readouterr().err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert main(["import", str(images_folder), str(garbage)]) == 1
    assert "cannot be loaded" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json")]) == 1
    assert "not a folder" in capsys.readouterr().err
    # No categories yet: nothing to export, said plainly.
    assert main(["export", str(images_folder), "--out", str(tmp_path / "o.json")]) == 1
    assert "no categories" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["export", str(images_folder), "--out", "o.json", "--format", "mask"])
    assert usage.value.code == 2


def test_a_project_open_in_the_app_is_refused(images_folder, synthetic_dataset, capsys):
    with ProjectStore.open(images_folder):
        assert main(["import", str(images_folder), str(synthetic_dataset)]) == 1
    assert "already open" in capsys.readouterr().err


def test_commands_run_as_a_module_without_a_display(images_folder, synthetic_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = subprocess.run(
        [sys.executable, "-m", "app", "import", str(images_folder), str(synthetic_dataset)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app.cli, app.project.coco_io, app.project.store; "
            "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'torch'))))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.stdout.strip() == "[]", check.stdout + check.stderr
