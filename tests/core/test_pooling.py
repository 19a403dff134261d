"""RoI pooling on several threads gives torchvision's ``MultiScaleRoIAlign`` result bit for bit."""

from __future__ import annotations

import multiprocessing
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from maskrcnn_core.model import pooling
from maskrcnn_core.model.pooling import ParallelMultiScaleRoIAlign


def _features_and_boxes(counts: list[int]) -> tuple[OrderedDict, list[torch.Tensor], list[tuple[int, int]]]:
    generator = torch.Generator().manual_seed(0)
    features = OrderedDict(
        (name, torch.randn(len(counts), 8, 256 // 2**i, 320 // 2**i, generator=generator))
        for i, name in enumerate(["0", "1", "2", "3"], start=2)
    )
    boxes = []
    for n in counts:  # small and large boxes, so that every level gets some
        xy = torch.rand(n, 2, generator=generator) * torch.tensor([1000.0, 800.0])
        wh = torch.rand(n, 2, generator=generator) * 400 + 4
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    return features, boxes, [(800, 1024)] * len(counts)


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _count_hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_submit = pooling._helpers.submit

    def submit(*args, **kwargs):
        calls.append(1)
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(pooling._helpers, "submit", submit)
    return calls


@pytest.mark.parametrize("counts", [[300], [250, 0, 180], [1000, 7]])
def test_threaded_pooling_equals_torchvision_bit_for_bit(counts, two_threads, monkeypatch) -> None:
    features, boxes, sizes = _features_and_boxes(counts)
    hand_offs = _count_hand_offs(monkeypatch)
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], [7, 7], sampling_ratio=2)(features, boxes, sizes)
    with torch.no_grad():
        got = ParallelMultiScaleRoIAlign(["0", "1", "2", "3"], [7, 7], sampling_ratio=2)(
            features, boxes, sizes
        )
    assert hand_offs, "the pooling did not go to a second thread"
    assert got.shape == (sum(counts), 8, 7, 7)
    assert torch.equal(got, reference)


def test_one_thread_or_a_gradient_keeps_torchvision_s_path(two_threads, monkeypatch) -> None:
    features, boxes, sizes = _features_and_boxes([400])
    hand_offs = _count_hand_offs(monkeypatch)
    pool = ParallelMultiScaleRoIAlign(["0", "1", "2", "3"], [14, 14], sampling_ratio=2)
    for level in features.values():
        level.requires_grad_(True)
    pooled = pool(features, boxes, sizes)  # training: the gradient flows as through torchvision's
    pooled.sum().backward()
    assert pooled.requires_grad and features["0"].grad is not None
    torch.set_num_threads(1)
    with torch.no_grad():
        pool(features, boxes, sizes)
    assert not hand_offs


def _helpers_run_work_in_child(queue) -> None:
    try:
        queue.put(pooling._helpers.submit(lambda: "ran").result(timeout=10))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


def test_a_forked_child_gets_its_own_helper_threads(two_threads) -> None:
    """A forked child (multiprocessing's default on Linux) has none of the parent's helper threads; its
    executor must start new ones rather than queue work for threads that do not exist there."""
    features, boxes, sizes = _features_and_boxes([300])
    with torch.no_grad():  # the parent's helper threads have run and sit idle now
        ParallelMultiScaleRoIAlign(["0", "1", "2", "3"], [7, 7], sampling_ratio=2)(features, boxes, sizes)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_helpers_run_work_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == "ran"
