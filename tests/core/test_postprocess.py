"""paste_masks_cropped / paste_masks_full against torchvision's own paste_masks_in_image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from maskrcnn_core.engine.postprocess import paste_masks_cropped, paste_masks_full
from maskrcnn_core.types import CroppedMask


def _boxes_touching_image(gen: torch.Generator, height: int, width: int, n: int) -> torch.Tensor:
    """``(n >= 6, 4)`` xyxy boxes of every kind that overlaps the image (torchvision's paste raises on the
    others): tiny, huge, partly outside, zero width or height, and sub-pixel."""
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = torch.rand(n, 2, generator=gen) ** 2 * size * 0.7
    boxes = torch.cat([centre - half, centre + half], dim=1)
    boxes[0] = torch.tensor([5.0, 7.0, 5.0, 20.0])  # zero width
    boxes[1] = torch.tensor([3.0, 4.0, 9.0, 4.0])  # zero height
    boxes[2] = torch.tensor([2.3, 2.6, 2.9, 3.1])  # sub-pixel
    boxes[3] = torch.tensor([-0.4 * width, -0.3 * height, 1.2 * width, 1.4 * height])  # covers the image
    boxes[4] = torch.tensor([0.0, 0.0, float(width), float(height)])
    boxes[5] = torch.tensor([width - 3.0, height - 2.0, width + 40.0, height + 25.0])  # corner only
    return boxes


def _boxes_outside_image(height: int, width: int) -> torch.Tensor:
    """Boxes that miss the image on every side by more than torchvision's box expansion."""
    return torch.tensor(
        [
            [width + 10.0, 5.0, width + 30.0, 15.0],
            [-30.0, 5.0, -12.0, 15.0],
            [5.0, height + 10.0, 15.0, height + 30.0],
            [5.0, -30.0, 15.0, -12.0],
        ]
    )


def _smooth_probs(gen: torch.Generator, n: int) -> torch.Tensor:
    """Blob-shaped probabilities, so that 0.5 crossings run across the whole mask like real ones."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=gen) - 0.5
    radius = 0.3 + 0.6 * torch.rand(n, 1, 1, generator=gen)
    dist = ((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2).sqrt()
    return torch.sigmoid((radius - dist) * 12)


def _full(crops: list[CroppedMask]) -> torch.Tensor:
    return torch.from_numpy(np.stack([c.to_full() for c in crops]))


@pytest.mark.parametrize("image_size", [(48, 64), (123, 457), (480, 640), (301, 97)])
@pytest.mark.parametrize("kind", ["uniform", "smooth"])
def test_pixels_equal_torchvision_paste_masks_in_image(image_size, kind):
    height, width = image_size
    gen = torch.Generator().manual_seed(height * 1000 + width)
    n = 40
    probs = torch.rand(n, 28, 28, generator=gen) if kind == "uniform" else _smooth_probs(gen, n)
    boxes = _boxes_touching_image(gen, height, width, n)

    expected = paste_masks_in_image(probs[:, None], boxes, (height, width), padding=1)[:, 0] > 0.5
    crops = paste_masks_cropped(probs, boxes, image_size)

    assert len(crops) == n
    assert all(c.image_size == image_size for c in crops)
    got = _full(crops)
    mismatched = int((got != expected).sum())
    # Exact in practice; a tolerance only for probabilities within float rounding of the threshold.
    assert mismatched <= 1e-3 * int(expected.sum())
    assert int(expected.sum()) > 1000


def test_agreement_near_the_threshold_is_above_99_9_percent():
    # Every probability within 5e-5 of 0.5: the worst case for float rounding differences.
    gen = torch.Generator().manual_seed(1)
    height, width = 200, 300
    probs = 0.5 + (torch.rand(30, 28, 28, generator=gen) - 0.5) * 1e-4
    boxes = _boxes_touching_image(gen, height, width, 30)
    expected = paste_masks_in_image(probs[:, None], boxes, (height, width))[:, 0] > 0.5
    got = _full(paste_masks_cropped(probs, boxes, (height, width)))
    inside = paste_masks_in_image(torch.ones(30, 1, 28, 28), boxes, (height, width))[:, 0] > 0
    assert float((got == expected)[inside].float().mean()) >= 0.999


@pytest.mark.parametrize("padding", [0, 2])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_padding_and_threshold_match_torchvision(padding, threshold):
    gen = torch.Generator().manual_seed(7)
    probs = _smooth_probs(gen, 12)
    boxes = _boxes_touching_image(gen, 90, 130, 12)
    expected = paste_masks_in_image(probs[:, None], boxes, (90, 130), padding=padding)[:, 0] > threshold
    got = _full(paste_masks_cropped(probs, boxes, (90, 130), threshold=threshold, padding=padding))
    assert int((got != expected).sum()) <= 1e-3 * int(expected.sum())


def test_crop_is_the_integer_box_clipped_to_the_image():
    # padding=0 keeps the box unexpanded; torchvision's integer box includes pixel x2 (w = x2 - x1 + 1).
    probs = torch.ones(3, 28, 28)
    boxes = torch.tensor([[14.0, 14.0, 42.0, 42.0], [-20.0, 10.5, 8.9, 38.0], [90.0, 80.0, 118.0, 108.0]])
    crops = paste_masks_cropped(probs, boxes, (100, 100), padding=0)
    assert crops[0].crop_box == (14, 14, 43, 43)
    assert crops[1].crop_box == (0, 10, 9, 39)
    assert crops[2].crop_box == (90, 80, 100, 100)
    assert all(c.mask.all() for c in crops)


def test_boxes_outside_the_image_give_empty_masks():
    # torchvision's paste_mask_in_image raises on these (slices of different sizes); we return empty crops.
    probs = torch.rand(4, 28, 28)
    crops = paste_masks_cropped(probs, _boxes_outside_image(50, 60), (50, 60))
    assert [c.mask.shape for c in crops] == [(0, 0)] * 4
    assert all(c.area == 0 and c.image_size == (50, 60) for c in crops)


def test_chunk_size_does_not_change_the_result():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(25, 28, 28, generator=gen)
    boxes = _boxes_touching_image(gen, 150, 200, 25)
    reference = _full(paste_masks_cropped(probs, boxes, (150, 200)))
    for max_chunk_pixels in (1, 64, 5000):  # 1: every band is a single row, alone in its chunk
        crops = paste_masks_cropped(probs, boxes, (150, 200), max_chunk_pixels=max_chunk_pixels)
        assert torch.equal(_full(crops), reference)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_resampled_in_float32(dtype):
    gen = torch.Generator().manual_seed(4)
    probs = torch.rand(10, 28, 28, generator=gen).to(dtype)
    boxes = _boxes_touching_image(gen, 64, 80, 10)
    expected = _full(paste_masks_cropped(probs.float(), boxes, (64, 80)))
    assert torch.equal(_full(paste_masks_cropped(probs, boxes, (64, 80))), expected)


def test_paste_masks_full_equals_the_cropped_masks():
    gen = torch.Generator().manual_seed(5)
    probs = torch.rand(10, 28, 28, generator=gen)
    boxes = torch.cat([_boxes_touching_image(gen, 70, 90, 6), _boxes_outside_image(70, 90)])
    full = paste_masks_full(probs, boxes, (70, 90))
    assert full.dtype == torch.bool and full.shape == (10, 70, 90) and full.device == probs.device
    assert torch.equal(full, _full(paste_masks_cropped(probs, boxes, (70, 90))))


def test_no_detections():
    probs, boxes = torch.zeros(0, 28, 28), torch.zeros(0, 4)
    assert paste_masks_cropped(probs, boxes, (40, 50)) == []
    full = paste_masks_full(probs, boxes, (40, 50))
    assert full.shape == (0, 40, 50) and full.dtype == torch.bool


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(6)
    probs = torch.rand(30, 28, 28, generator=gen)
    boxes = _boxes_touching_image(gen, 300, 400, 30)
    on_cpu = _full(paste_masks_cropped(probs, boxes, (300, 400)))
    on_gpu = paste_masks_cropped(probs.cuda(), boxes.cuda(), (300, 400))
    assert all(isinstance(c.mask, np.ndarray) for c in on_gpu)
    assert int((_full(on_gpu) != on_cpu).sum()) <= 1e-3 * int(on_cpu.sum())
    assert paste_masks_full(probs.cuda(), boxes.cuda(), (300, 400)).is_cuda


@pytest.mark.parametrize(
    ("probs", "boxes", "image_size", "kwargs", "message"),
    [
        (torch.rand(2, 28), torch.zeros(2, 4), (10, 10), {}, r"\(N, M, M\)"),
        (torch.rand(2, 28, 14), torch.zeros(2, 4), (10, 10), {}, r"\(N, M, M\)"),
        (np.random.rand(2, 28, 28), torch.zeros(2, 4), (10, 10), {}, r"\(N, M, M\) tensor"),
        (torch.ones(2, 28, 28, dtype=torch.uint8), torch.zeros(2, 4), (10, 10), {}, "float tensor"),
        (torch.rand(2, 28, 28), torch.zeros(3, 4), (10, 10), {}, r"\(N, 4\).*N = 2"),
        (torch.rand(1, 28, 28), torch.tensor([[0.0, 0.0, float("nan"), 5.0]]), (10, 10), {}, "finite"),
        (torch.rand(1, 28, 28), torch.tensor([[5.0, 0.0, 2.0, 5.0]]), (10, 10), {}, "x2 >= x1"),
        (torch.rand(1, 28, 28), torch.zeros(1, 4), (0, 10), {}, "image_size"),
        (torch.rand(1, 28, 28), torch.zeros(1, 4), (10, 10.5), {}, "image_size"),
        (torch.rand(1, 28, 28), torch.zeros(1, 4), (10, 10), {"padding": -1}, "padding"),
        (torch.rand(1, 28, 28), torch.zeros(1, 4), (10, 10), {"max_chunk_pixels": 0}, "max_chunk_pixels"),
    ],
)
def test_bad_input_raises_value_error(probs, boxes, image_size, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paste_masks_cropped(probs, boxes, image_size, **kwargs)
