"""RoI pooling: torchvision's ``MultiScaleRoIAlign``, with its CPU work spread over torch's threads.

torchvision's CPU ``roi_align`` kernel runs on one thread whatever ``torch.get_num_threads()`` says; for the
1,000 proposals of the box head it was 0.4 s of a 4.8 s prediction on 2 cores. Each RoI is pooled
independently of the others, so pooling the RoIs in chunks on several threads (the kernel releases the GIL)
and putting the rows back in order gives the same tensor, bit for bit.

Feature maps laid out channels-last on the CPU (what the OpenVINO backend hands over) are pooled by
:func:`roi_align_channels_last` instead: torchvision's kernel reads each channel's plane apart, and on such
maps a weighted gather of whole channel rows does the same sums several times faster. It samples the same
points with the same weights; only the order of the sums differs (float rounding). Contiguous maps, what
the torch backend has, keep torchvision's kernel and its exact results.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper, _convert_to_roi_format, _filter_input, _setup_scales

#: fewer RoIs than this per chunk are not worth a thread hand-off
MIN_ROIS_PER_CHUNK = 64


def _new_helpers() -> ThreadPoolExecutor:
    """Helper threads for all models in the process; a call uses get_num_threads() - 1 of them at most."""
    return ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1), thread_name_prefix="roi_align")


def _replace_helpers_in_child() -> None:
    # a forked child has none of the parent's threads, but the executor would believe it still had them and
    # queue work that nothing runs
    global _helpers
    _helpers = _new_helpers()


_helpers = _new_helpers()
os.register_at_fork(after_in_child=_replace_helpers_in_child)


class ParallelMultiScaleRoIAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` (same arguments, no parameters) that pools CPU RoIs on
    ``torch.get_num_threads()`` threads when no gradient is needed.

    ``x``: feature levels ``(B, C, H_l, W_l)``; ``boxes``: per image ``(N_i, 4)`` xyxy in image pixels.
    Returns ``(sum N_i, C, *output_size)``, rows in the order of ``boxes``.
    """

    # Set up by the base class (untyped), filled in on the first call.
    scales: list[float] | None
    map_levels: LevelMapper | None

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        total = sum(len(b) for b in boxes)
        chunks = min(torch.get_num_threads(), total // MIN_ROIS_PER_CHUNK)
        features = _filter_input(x, self.featmap_names)
        if (
            total == 0
            or features[0].device.type != "cpu"
            or (torch.is_grad_enabled() and any(f.requires_grad for f in features))
        ):
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:  # set up once, here, not racing in the threads
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        if self.sampling_ratio > 0 and _channels_last(features):
            return self._gather(features, boxes)
        if chunks < 2:
            return super().forward(x, boxes, image_shapes)
        # chunk j takes the j-th slice of every image's boxes, so that each chunk keeps the batch indices
        parts = [[b[len(b) * j // chunks : len(b) * (j + 1) // chunks] for b in boxes] for j in range(chunks)]
        pool = super().forward
        pending = [_helpers.submit(pool, x, part, image_shapes) for part in parts[1:]]
        pooled = [pool(x, parts[0], image_shapes)] + [f.result() for f in pending]
        # back to the order of `boxes`: image by image, and within an image chunk by chunk
        per_image = [rows.split([len(b) for b in part]) for rows, part in zip(pooled, parts, strict=True)]
        return torch.cat([per_image[j][image] for image in range(len(boxes)) for j in range(chunks)])

    def _gather(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """torchvision's ``_multiscale_roi_align`` with :func:`roi_align_channels_last` as the kernel."""
        assert self.scales is not None and self.map_levels is not None
        output_size = tuple(self.output_size)
        rois = _convert_to_roi_format(boxes)
        if len(features) == 1:
            pooled = roi_align_channels_last(
                features[0], rois, output_size, self.scales[0], self.sampling_ratio
            )
            return pooled.contiguous()
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            if len(index):
                pooled = roi_align_channels_last(
                    feature, rois[index], output_size, scale, self.sampling_ratio
                )
                result.index_copy_(0, index, pooled)
        return result


def _channels_last(features: list[Tensor]) -> bool:
    """float32 CPU maps all stored channels-last, the finest not also contiguous (a map whose plane is one
    pixel is both)."""
    return not features[0].is_contiguous() and all(
        f.device.type == "cpu"
        and f.dtype == torch.float32
        and f.is_contiguous(memory_format=torch.channels_last)
        for f in features
    )


def roi_align_channels_last(
    feature: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """torchvision's ``roi_align(feature, rois, output_size, spatial_scale, sampling_ratio, aligned=False)``
    on a channels-last ``(B, C, H, W)`` map, as one weighted gather of channel rows.

    ``rois`` ``(K, 5)``: batch index, then xyxy in image pixels; ``sampling_ratio`` > 0. Each output bin
    averages ``sampling_ratio``² bilinear samples, each the weighted sum of 4 pixels: the sample points,
    their clamping at the border and the zero weight of points beyond it are torchvision's, computed in
    the same order, so only the order of the final sums differs. Returns ``(K, C, *output_size)``, a
    channels-last view.
    """
    batch, channels, height, width = feature.shape
    rows, cols = output_size
    count = len(rois)
    if count == 0:
        return feature.new_zeros((0, channels, rows, cols))
    # (B * H * W, C): a view of a channels-last map, one row per pixel
    table = feature.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    rois = rois.to(feature.dtype)
    y_pixel, y_weight = _taps(rois[:, 2], rois[:, 4], rows, height, spatial_scale, sampling_ratio)
    x_pixel, x_weight = _taps(rois[:, 1], rois[:, 3], cols, width, spatial_scale, sampling_ratio)
    image = rois[:, 0].to(torch.int64) * (height * width)
    # per RoI, bin row, bin column, then the sample row, sample column, tap row, tap column
    index = (
        image[:, None, None, None, None, None, None]
        + (y_pixel * width)[:, :, None, :, None, :, None]
        + x_pixel[:, None, :, None, :, None, :]
    )
    weight = y_weight[:, :, None, :, None, :, None] * x_weight[:, None, :, None, :, None, :]
    weight = weight / (sampling_ratio * sampling_ratio)
    taps = index.shape[3:].numel()
    pooled = F.embedding_bag(
        index.reshape(-1, taps), table, per_sample_weights=weight.reshape(-1, taps), mode="sum"
    )
    return pooled.view(count, rows, cols, channels).permute(0, 3, 1, 2)


def _taps(
    start: Tensor, end: Tensor, bins: int, size: int, spatial_scale: float, sampling_ratio: int
) -> tuple[Tensor, Tensor]:
    """Along one axis of the map (``size`` pixels): per RoI, bin and sample, the two pixels its linear
    interpolation reads and their weights, ``(K, bins, sampling_ratio, 2)`` each (torchvision's
    ``roi_align`` CPU kernel with ``aligned=False``, step for step)."""
    start = start * spatial_scale
    length = torch.clamp(end * spatial_scale - start, min=1.0)
    bin_size = (length / bins)[:, None, None]
    step = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    offset = (torch.arange(sampling_ratio, dtype=start.dtype, device=start.device) + 0.5)[None, None, :]
    position = start[:, None, None] + step * bin_size + offset * bin_size / sampling_ratio
    inside = (position >= -1.0) & (position <= size)  # a sample further out reads zero
    position = position.clamp(min=0.0)
    low = position.to(torch.int64)
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, low, low + 1)
    position = torch.where(at_edge, low.to(position.dtype), position)
    fraction = position - low
    pixel = torch.stack([low, high], dim=-1)
    weight = torch.stack([1.0 - fraction, fraction], dim=-1) * inside[..., None]
    return pixel, weight
