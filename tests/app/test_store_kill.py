"""kill -9 during a scripted editing session: every committed edit survives and the file stays sound.

Runs a few rounds of ``bench/soak_kill.py`` (the soak runs 100); the checker itself is tested too, so a
pass means something.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak_kill.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_kill", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kill_minus_nine_loses_no_committed_edit(tmp_path):
    soak = _soak_module()
    total_done = 0
    for seed in (11, 12, 13):
        problem, done = soak.one_run(seed, tmp_path)
        assert problem is None, f"seed {seed}: {problem}"
        total_done += done
    assert total_done > 0, "the children were killed before committing anything: nothing was tested"


def test_checker_notices_a_lost_commit(tmp_path):
    soak = _soak_module()
    problem, _ = soak.one_run(21, tmp_path)
    assert problem is None
    folder = tmp_path / "run21"
    fake = (
        '{"op": "add", "image": 1, "id": 999, '
        '"inst": {"category_id": 1, "counts": "lost", "provenance": "edited"}}'
    )
    # Pretend the child had reported one more committed edit than the file holds.
    lines = _replay_lines(folder) + [f"BEGIN {fake}", f"DONE {fake}"]
    assert "missing" in soak.check_run(folder, lines)


def _replay_lines(folder: Path) -> list[str]:
    """Lines that describe exactly what the file holds now, as DONE records."""
    import json

    from app.project.store import ProjectStore

    lines = []
    with ProjectStore.open(folder) as store:
        for r in store.instances():
            inst = {"category_id": r.category_id, "counts": r.rle["counts"], "provenance": r.provenance.value}
            if r.provenance.value == "predicted":
                continue
            lines.append("DONE " + json.dumps({"op": "add", "image": r.image_id, "inst": inst, "id": r.id}))
        predicted: dict[int, list] = {}
        for r in store.instances():
            if r.provenance.value == "predicted":
                predicted.setdefault(r.image_id, []).append(
                    {"category_id": r.category_id, "counts": r.rle["counts"], "provenance": "predicted"}
                )
        for image_id, insts in predicted.items():
            lines.append("DONE " + json.dumps({"op": "predict", "image": image_id, "insts": insts}))
        value = store.get_setting("last_image_id")
        if value is not None:
            lines.append("DONE " + json.dumps({"op": "setting", "value": value}))
    return lines


def test_soak_script_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SOAK), "--runs", "2", "--seed", "3"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("2/2 runs ok")
