"""RoI pooling: torchvision's ``MultiScaleRoIAlign``, with its CPU work spread over torch's threads.

torchvision's CPU ``roi_align`` kernel runs on one thread whatever ``torch.get_num_threads()`` says; for the
1,000 proposals of the box head it was 0.4 s of a 4.8 s prediction on 2 cores. Each RoI is pooled
independently of the others, so pooling the RoIs in chunks on several threads (the kernel releases the GIL)
and putting the rows back in order gives the same tensor, bit for bit.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper, _filter_input, _setup_scales

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
            chunks < 2
            or features[0].device.type != "cpu"
            or (torch.is_grad_enabled() and any(f.requires_grad for f in features))
        ):
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:  # set up once, here, not racing in the threads
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        # chunk j takes the j-th slice of every image's boxes, so that each chunk keeps the batch indices
        parts = [[b[len(b) * j // chunks : len(b) * (j + 1) // chunks] for b in boxes] for j in range(chunks)]
        pool = super().forward
        pending = [_helpers.submit(pool, x, part, image_shapes) for part in parts[1:]]
        pooled = [pool(x, parts[0], image_shapes)] + [f.result() for f in pending]
        # back to the order of `boxes`: image by image, and within an image chunk by chunk
        per_image = [rows.split([len(b) for b in part]) for rows, part in zip(pooled, parts, strict=True)]
        return torch.cat([per_image[j][image] for image in range(len(boxes)) for j in range(chunks)])
