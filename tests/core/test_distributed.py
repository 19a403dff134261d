"""DistributedDataParallel on CPU with 2 gloo processes: ranks stay in lockstep and match one process.

Two ways in: ``torch.multiprocessing`` processes that call ``train()`` directly (so each rank can hand its
parameters and losses back to the test), and ``torchrun -m maskrcnn_core train``, the documented command.
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
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_model import TINY as TINY_BASE
from tiny_model import TINY_CLI_FLAGS

from maskrcnn_core import load_model, mask_rcnn_mobilenet_v2_fpn
from maskrcnn_core.data import generate_synthetic_dataset, load_coco
from maskrcnn_core.engine.training import TrainConfig, train
from maskrcnn_core.protocol import FINAL_MODEL, LAST_CHECKPOINT, METRICS_LOG

pytestmark = pytest.mark.slow

# The tiny model with a frozen BatchNorm: trainable BatchNorm normalises over each process's
# own images, which would make 2 x 2 images differ from 1 x 4 for a reason that is not DDP's doing.
TINY = {**TINY_BASE, "norm": "frozen"}
ITERATIONS = 8
RANKS_TIMEOUT_S = 180
PER_RANK_BATCH = 2
LR = 0.05
# Without augmentation both setups see identical pixels per step (``_batch_indices`` splits one global
# batch by rank); what still differs is the RPN's and RoI head's random choice of which anchors and
# proposals to sample, drawn from per-rank seeds.
CONFIG = dict(lr=LR, hflip_prob=0.0, scale_jitter=None, checkpoint_every=3, seed=1)
# Measured (8 steps, total loss falling 2.93 -> 2.33): the largest per-step difference between DDP and
# the single process was 0.4 % of the loss. Averaging gradients wrongly (summing them, i.e. twice the
# learning rate) moves the loss by 17 % within 6 steps; the test checks that control too.
LOSS_REL_TOL = 0.03
# Measured: after the 8 steps the one process's weights lie 0.04 x (distance the weights moved) from DDP's.
WEIGHT_GAP_TOL = 0.2


def _tiny_model(data) -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts rank 0's)
    return mask_rcnn_mobilenet_v2_fpn(
        class_names=data.class_names, category_ids=tuple(c.id for c in data.categories), **TINY
    )


def _run(root: Path, out: Path, world: int, batch_size: int, lr: float = LR) -> tuple[list[dict], dict]:
    data, report = load_coco(root / "train.json", root / "images")
    assert report.ok
    events: list[dict] = []
    model = _tiny_model(data)
    config = TrainConfig(iterations=ITERATIONS, batch_size=batch_size, **{**CONFIG, "lr": lr})
    train(model, data, out, config, callbacks=[lambda event: events.append(event.to_dict())])
    return events, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rank_main(rank: int, world: int, port: int, root: str, result_dir: str) -> None:
    """One DDP process: its own run folder, so the test can see that only rank 0 writes anything."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        events, state = _run(Path(root), Path(result_dir) / f"run_rank{rank}", world, PER_RANK_BATCH)
    finally:
        dist.destroy_process_group()
    torch.save({"events": events, "state": state}, Path(result_dir) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp_shapes")
    generate_synthetic_dataset(
        root, num_images=8, seed=3, image_size=(64, 80), class_names=("circle", "square"), category_ids=(7, 9)
    )
    return root


def _progress_losses(events: list[dict], key: str = "total_loss") -> list[float]:
    return [e["losses"][key] for e in events if e["event"] == "progress"]


def test_two_gloo_ranks_stay_identical_and_match_one_process(shapes_root: Path, tmp_path: Path) -> None:
    context = mp.start_processes(
        _rank_main,
        args=(2, _free_port(), str(shapes_root), str(tmp_path)),
        nprocs=2,
        start_method="spawn",
        join=False,
    )
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not context.join(timeout=1):  # raises when a rank fails; a hang must not hang the suite
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the 2 ranks did not finish within {RANKS_TIMEOUT_S} s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    # gradients are averaged across ranks, so every rank applies the same update: bit-identical weights
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    assert state0.keys() == state1.keys()
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
    single_events, single_state = _run(shapes_root, tmp_path / "single", 1, PER_RANK_BATCH * 2)
    initial = _tiny_model(load_coco(shapes_root / "train.json", shapes_root / "images")[0]).state_dict()
    trained = [k for k in state0 if not torch.equal(state0[k], initial[k])]
    assert trained, "the weights did not change: nothing was tested"

    # only rank 0 reports and writes: its callbacks get the events, rank 1's none, and its folder stays empty
    assert [e["event"] for e in ranks[1]["events"]] == []
    start = ranks[0]["events"][0]
    assert start["event"] == "start" and start["world_size"] == 2 and start["global_batch"] == 4
    rank0_dir, rank1_dir = tmp_path / "run_rank0", tmp_path / "run_rank1"
    assert (rank0_dir / FINAL_MODEL).is_file() and (rank0_dir / LAST_CHECKPOINT).is_file()
    assert not rank1_dir.exists() or not any(rank1_dir.iterdir())

    # the same global batch in one process: the same loss curve up to the RoI/anchor sampling
    ddp = _progress_losses(ranks[0]["events"])
    single = _progress_losses(single_events)
    assert len(ddp) == len(single) == ITERATIONS
    assert single[-1] < 0.9 * single[0], "the loss barely moved: the comparison would prove little"
    for step, (a, b) in enumerate(zip(ddp, single, strict=True), start=1):
        assert a == pytest.approx(b, rel=LOSS_REL_TOL), step
    for key in ("rpn_cls_loss", "roi_cls_loss", "mask_loss"):
        pairs = zip(
            _progress_losses(ranks[0]["events"], key), _progress_losses(single_events, key), strict=True
        )
        for a, b in pairs:
            assert a == pytest.approx(b, rel=LOSS_REL_TOL, abs=0.01), key
    # the weights too: the one process ends near where DDP ended, measured against how far they moved
    gap = torch.cat([(state0[k] - single_state[k]).flatten() for k in trained]).norm()
    moved = torch.cat([(state0[k] - initial[k]).flatten() for k in trained]).norm()
    assert gap <= WEIGHT_GAP_TOL * moved

    # the control: a learning rate off by the world size (summed instead of averaged gradients) is caught
    doubled, _ = _run(shapes_root, tmp_path / "doubled", 1, PER_RANK_BATCH * 2, lr=2 * LR)
    assert any(
        a != pytest.approx(b, rel=LOSS_REL_TOL)
        for a, b in zip(_progress_losses(doubled), single, strict=True)
    )


TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this Python")
@pytest.mark.parametrize("tier", ["full", "heads"])
def test_torchrun_command_trains_with_two_processes(shapes_root: Path, tmp_path: Path, tier: str) -> None:
    out = tmp_path / "run"
    command = [
        TORCHRUN,
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "maskrcnn_core",
        "train",
        "--train-json",
        str(shapes_root / "train.json"),
        "--images",
        str(shapes_root / "images"),
        "--out",
        str(out),
        *TINY_CLI_FLAGS,
        "--iterations",
        "3",
        "--batch-size",
        "1",
        "--checkpoint-every",
        "2",
        "--device",
        "cpu",
        "--num-threads",
        "1",
        "--progress",
        "jsonl",
        "--tier",
        tier,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    logged = [json.loads(line) for line in (out / METRICS_LOG).read_text().splitlines()]
    for events in (printed, logged):  # each event once: rank 1 neither prints nor logs
        kinds = [e["event"] for e in events if e["event"] != "caching"]
        assert kinds == ["start", "progress", "progress", "checkpoint", "progress", "checkpoint", "finished"]
        assert events[0]["world_size"] == 2 and events[0]["global_batch"] == 2 and events[0]["tier"] == tier
        # the heads tier: every process caches the features of every image (and mirror image) first
        caching = [e for e in events if e["event"] == "caching"]
        assert len(caching) == (8 if tier == "heads" else 0)
        assert tier == "full" or caching[-1]["done"] == caching[-1]["total"] == 16
    model = load_model(out / FINAL_MODEL)
    assert model.checkpoint_metadata["training"]["world_size"] == 2
