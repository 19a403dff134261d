"""The parts torchvision lacks or that need our settings: the dropout box head and the input transform.

Everything else (RPN head, anchors, RoIAlign, predictors, mask head) is torchvision's own module; the
parameter names here match torchvision's so that its checkpoints load unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class MLPBoxHead(nn.Module):
    """The original two-layer MLP box head: ``(R, C, P, P) -> (R, hidden_dim)``.

    Same parameter names as torchvision's ``TwoMLPHead`` (``fc6``, ``fc7``), plus dropout after each
    layer; dropout 0 makes it exactly ``TwoMLPHead``.
    """

    def __init__(self, in_features: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden_dim)
        self.fc7 = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)
        x = self.dropout(torch.relu(self.fc6(x)))
        return self.dropout(torch.relu(self.fc7(x)))


class ImageTransform(GeneralizedRCNNTransform):
    """Normalise, resize and batch images, as torchvision does, but without mode switches.

    Scale jitter (a random choice among several ``min_size`` values) applies exactly when targets are
    given, i.e. for the loss; inference always uses the last ``min_size``. torchvision decides this by
    ``self.training`` instead, which would make ``predict`` depend on the module mode.

    Images may also be ``(3, H, W)`` uint8 (0..255): they are normalised through a table of the 256 levels,
    each computed with the float operations a float image's pixel goes through (``/ 255``, ``- mean``,
    ``/ std``), so the result is bit for bit the same, in one pass over the full-size image instead of
    four (0.3 s less on a 12-megapixel photo on 2 cores).

    Inside :meth:`channel_at_a_time`, a uint8 image at inference is normalised and resized one channel
    after the other, so its full-size float copy is a third as large.
    """

    training: bool  # nn.Module's mode flag, declared here because the torchvision base class is untyped
    #: inference without the resize (tiled inference runs each tile at the image's own scale, 1:1)
    _native_scale: bool = False
    #: uint8 images at inference normalised and resized a channel at a time (see channel_at_a_time)
    _by_channel: bool = False

    @contextlib.contextmanager
    def native_scale(self) -> Iterator[None]:
        """Inference inside this block leaves images at their own size (still normalised and padded to
        the size divisor): tiled inference, whose tiles are cut at the scale the model was trained for."""
        previous, self._native_scale = self._native_scale, True
        try:
            yield
        finally:
            self._native_scale = previous

    @contextlib.contextmanager
    def channel_at_a_time(self) -> Iterator[None]:
        """Inference inside this block normalises and resizes a uint8 image one channel after the other:
        the full-size float copy it goes through, the largest buffer of a large photo's inference, is a
        third as large. torch's resize of one channel is not always bit for bit that of three (it depends
        on the thread count), so only a backend that already differs from torchvision's arithmetic by more
        (the compiled CPU backend) asks for it."""
        previous, self._by_channel = self._by_channel, True
        try:
            yield
        finally:
            self._by_channel = previous

    def normalize(self, image: Tensor) -> Tensor:
        if image.dtype != torch.uint8:
            return super().normalize(image)
        if self._by_channel:
            return image  # resize normalises it, a channel at a time
        return self._lookup(image, self._level_table(image.device))

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if image.dtype == torch.uint8:  # normalize left it to us (channel_at_a_time)
            table = self._level_table(image.device)
            if target is not None or self._native_scale:
                return self._resize(self._lookup(image, table), target)
            resized = []
            for c in range(len(image)):
                channel = self._lookup(image[c : c + 1], table[c : c + 1])
                resized.append(self._resize(channel, None)[0])
                del channel  # freed before the next channel's is made
            return torch.cat(resized), None
        return self._resize(image, target)

    def _level_table(self, device: torch.device) -> Tensor:
        """``(3, 256)``: each channel's normalised value of each uint8 level, by the float operations."""
        levels = torch.arange(256, dtype=torch.float32, device=device).div_(255.0)
        return super().normalize(levels.expand(3, 1, 256))[:, 0]

    @staticmethod
    def _lookup(image: Tensor, table: Tensor) -> Tensor:
        return lookup_cpu(image, table) if image.device.type == "cpu" else lookup(image, table)

    def _resize(
        self, image: Tensor, target: dict[str, Tensor] | None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if self._native_scale and target is None:
            return image, target
        was_training = self.training
        self.training = target is not None and len(self.min_size) > 1
        try:
            return super().resize(image, target)
        finally:
            self.training = was_training

    def resize_target(self, target: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """``target`` of an ``image_size`` (H, W) image resized as :meth:`resize` resizes the image alone
        (the inference size, no scale jitter): the targets that go with features computed once."""
        was_training = self.training
        self.training = False
        try:
            # only the image's shape is read: a meta tensor allocates nothing
            _, resized = super().resize(torch.empty((3, *image_size), device="meta"), dict(target))
        finally:
            self.training = was_training
        assert resized is not None
        return resized


def lookup(image: Tensor, table: Tensor) -> Tensor:
    """``table[c][image[c]]`` for a ``(C, H, W)`` uint8 image and a ``(C, 256)`` table, on any device."""
    return torch.stack([table[c][image[c].long()] for c in range(len(image))])


def lookup_cpu(image: Tensor, table: Tensor) -> Tensor:
    """:func:`lookup` on the CPU with OpenCV's table lookup: 3x faster than any torch indexing of uint8."""
    out = torch.empty(image.shape, dtype=torch.float32)
    planes, table_np = out.numpy(), table.numpy()
    for c in range(len(image)):
        cv2.LUT(np.ascontiguousarray(image[c].numpy()), table_np[c], dst=planes[c])
    return out
