"""``predict`` shared out over 2 gloo processes on the CPU: the same results file as one process, the
unreadable image and a failed share named, no part files left behind.

Two ways in: ``torchrun -m maskrcnn_core predict``, the documented command, and processes that set
torchrun's environment themselves and call the library, so that one of them can be given a model file
that is not there (a machine without the checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from app.project.predictions_io import import_predictions
from app.project.store import ProjectStore
from app.resources import DEMO_MODEL
from maskrcnn_core.cli import main
from maskrcnn_core.data import generate_synthetic_dataset
from maskrcnn_core.data.coco import predictions_to_coco_results
from maskrcnn_core.engine.distributed import process_place
from maskrcnn_core.engine.predictor import Predictor
from maskrcnn_core.engine.sharded_prediction import predict_images, share
from maskrcnn_core.protocol import ExitCode

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet"),
]

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
RANKS_TIMEOUT_S = 180
# Sorted second, so the unreadable file falls in the share of process 1, not the leader's.
UNREADABLE = "train_000000_unreadable.png"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 synthetic images the demo model was trained to segment, and a file that is no image."""
    root = tmp_path_factory.mktemp("predict_shapes")
    generate_synthetic_dataset(root, num_images=7, seed=5)
    (root / "images" / UNREADABLE).write_bytes(b"not a png")
    return root


def _predict_args(images: Path, out: Path) -> list[str]:
    return ["predict", "--weights", str(DEMO_MODEL), "--images", str(images), "--out", str(out)]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")
def test_torchrun_gives_the_single_process_results_file(shapes: Path, tmp_path: Path, capsys) -> None:
    single = tmp_path / "single" / "results.json"
    single.parent.mkdir()
    flags = ["--device", "cpu", "--num-threads", "1", "--progress", "none"]
    assert main([*_predict_args(shapes / "images", single), *flags]) == ExitCode.OK
    single_report = capsys.readouterr().err

    merged = tmp_path / "torchrun" / "results.json"
    merged.parent.mkdir()
    command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "maskrcnn_core"]
    command += [*_predict_args(shapes / "images", merged), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RANKS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(merged.read_text())
    names = sorted(p.name for p in (shapes / "images").glob("*.png"))
    assert len({r["image_id"] for r in results}) == 7, "the demo model found shapes in every image"
    assert merged.read_bytes() == single.read_bytes()  # the same detections, in the same order
    # process 1 could not read its file; the leader names it, once, as the single process does
    unreadable = [line for line in done.stderr.splitlines() if line.startswith("skipped")]
    assert len(unreadable) == 1 and UNREADABLE in unreadable[0]
    assert unreadable == [line for line in single_report.splitlines() if line.startswith("skipped")]
    assert f"{len(results)} detections on 7 images written to {merged}; 1 images could not be read" in (
        done.stderr
    )
    assert [p.name for p in merged.parent.iterdir()] == ["results.json"]  # the parts folder is gone
    assert all(r["file_name"] == names[r["image_id"] - 1] for r in results)

    # the merged file is what the app imports as predictions (the category names from the dataset's file)
    with ProjectStore.open(shapes / "images", project_dir=tmp_path / "project") as store:
        summary = import_predictions(store, merged, model_name="demo", image_list=shapes / "train.json")
    assert summary.detections == len(results) and summary.images == 7 and not summary.skipped


def _rank_main(rank: int, world: int, port: int, images: list[str], out: str, weights: list[str]) -> None:
    """One process as torchrun would start it: its place comes from the environment."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        OMP_NUM_THREADS="1",
    )
    with process_place("cpu") as place:
        outcome = predict_images(
            lambda: Predictor(weights[place.rank], device="cpu", backend="torch"),
            images,
            list(range(1, len(images) + 1)),
            place,
            out=Path(out),
            score_thresh=0.05,
        )
    if outcome is not None:
        Path(out).write_text(
            json.dumps(
                {
                    "results": outcome.results,
                    "unreadable": [[i.source, i.reason] for i in outcome.unreadable],
                    "share_failures": [[i.source, i.reason] for i in outcome.share_failures],
                    "failed_ranks": outcome.failed_ranks,
                }
            )
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_share_names_its_images_and_the_others_are_kept(shapes: Path, tmp_path: Path) -> None:
    images = sorted(str(p) for p in (shapes / "images").glob("*.png"))
    out = tmp_path / "results.json"
    missing = str(tmp_path / "not_on_this_machine.pt")
    context = mp.start_processes(
        _rank_main,
        args=(2, _free_port(), images, str(out), [str(DEMO_MODEL), missing]),
        nprocs=2,
        start_method="spawn",
        join=False,
    )
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not context.join(timeout=1):  # raises when a process fails: a failed share must not
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the 2 processes did not finish within {RANKS_TIMEOUT_S} s")
    outcome = json.loads(out.read_text())

    assert outcome["failed_ranks"] == [1]
    lost = [images[i] for i in share(len(images), 1, 2)]
    assert [source for source, _ in outcome["share_failures"]] == lost
    assert UNREADABLE in lost[0]  # the failed share's unreadable file counts among its lost images
    assert all(
        reason.startswith("process 1 failed: ") and "not_on_this_machine.pt" in reason
        for _, reason in outcome["share_failures"]
    )
    assert outcome["unreadable"] == []
    # the leader's own share is whole: what one process predicts for those images
    kept = list(share(len(images), 0, 2))
    predictor = Predictor(DEMO_MODEL, device="cpu", backend="torch")
    predictions = predictor.predict([images[i] for i in kept], score_thresh=0.05)
    expected = predictions_to_coco_results(predictions, [i + 1 for i in kept])
    assert expected and outcome["results"] == json.loads(json.dumps(expected))
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # the parts folder is gone
