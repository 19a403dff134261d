"""RoI pooling on several threads gives torchvision's ``MultiScaleRoIAlign`` result bit for bit; on
channels-last maps (the OpenVINO backend's) the gather kernel gives it to float rounding."""

from __future__ import annotations

import multiprocessing
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from maskrcnn_core.model import pooling
from maskrcnn_core.model.pooling import ParallelMultiScaleRoIAlign, roi_align_channels_last


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


@pytest.mark.parametrize("output_size", [(7, 7), (14, 14), (3, 5)])
def test_the_gather_kernel_samples_what_torchvision_s_roi_align_samples(output_size) -> None:
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 16, 37, 53, generator=generator)
    xy = torch.rand(200, 2, generator=generator) * torch.tensor([400.0, 280.0])
    wh = torch.rand(200, 2, generator=generator) ** 3 * 300
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:6] = torch.tensor(
        [
            [0.0, 0.0, 0.3, 0.2],  # under a pixel: torchvision stretches it to one
            [-30.0, -20.0, 12.0, 9.0],  # reaching out of the map on the top left
            [400.0, 280.0, 480.0, 330.0],  # on and beyond the bottom right edge
            [-90.0, -70.0, -50.0, -40.0],  # wholly outside: samples beyond a pixel out read zero
            [0.0, 0.0, 424.0, 296.0],  # the whole map
            [100.5, 100.5, 100.5, 100.5],  # empty
        ]
    )
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=generator).float(), boxes], dim=1)
    reference = roi_align(feature, rois, output_size, spatial_scale=1 / 8, sampling_ratio=2, aligned=False)
    got = roi_align_channels_last(
        feature.contiguous(memory_format=torch.channels_last), rois, output_size, 1 / 8, 2
    )
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("counts", [[300], [250, 0, 180], [1000, 7], [0]])
def test_channels_last_maps_pool_by_the_gather_kernel_to_torchvision_s_rounding(
    counts, two_threads, monkeypatch
) -> None:
    features, boxes, sizes = _features_and_boxes(counts)
    hand_offs = _count_hand_offs(monkeypatch)
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], [14, 14], sampling_ratio=2)(features, boxes, sizes)
    channels_last = OrderedDict(
        (name, level.contiguous(memory_format=torch.channels_last)) for name, level in features.items()
    )
    with torch.no_grad():
        got = ParallelMultiScaleRoIAlign(["0", "1", "2", "3"], [14, 14], sampling_ratio=2)(
            channels_last, boxes, sizes
        )
    assert not hand_offs, "channels-last maps went through torchvision's kernel"
    assert got.shape == (sum(counts), 8, 14, 14) and got.is_contiguous()
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)
