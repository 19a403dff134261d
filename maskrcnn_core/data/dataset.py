"""A torch ``Dataset`` of images and instance targets from a validated :class:`CocoData`."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from maskrcnn_core.data.coco import CocoData, CocoImage
from maskrcnn_core.data.transforms import Target, Transform
from maskrcnn_core.image_io import ImageReadError, read_image
from maskrcnn_core.types import Category, ClassMap


class InstanceDataset(Dataset):
    """Items are ``(image, target)``, the format torchvision's detection models train on.

    ``image`` is ``(3, H, W)`` float32 RGB in ``[0, 1]`` (EXIF orientation applied); ``target`` has
    ``boxes`` ``(N, 4)`` float32 xyxy in pixels (the masks' tight boxes, ``x2``/``y2`` exclusive),
    ``labels`` ``(N,)`` int64 in ``1..K``, ``masks`` ``(N, H, W)`` uint8 in {0, 1} and ``image_id`` int,
    all after ``transforms`` when given.

    Crowd annotations are left out: a crowd region is ignored, not trained as one instance.
    ``include_empty=False`` drops images without a non-crowd instance. Masks are decoded per item.
    """

    def __init__(
        self, data: CocoData, *, transforms: Transform | None = None, include_empty: bool = True
    ) -> None:
        self.data = data
        self.transforms = transforms
        self.images: list[CocoImage] = [
            image for image in data.images if include_empty or any(not a.iscrowd for a in image.annotations)
        ]

    @property
    def categories(self) -> tuple[Category, ...]:
        return self.data.categories

    @property
    def class_map(self) -> ClassMap:
        """Which category each target label stands for."""
        return self.data.class_map

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def image_ids(self) -> list[int]:
        return [image.id for image in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        info = self.images[index]
        try:
            pixels = read_image(info.path)
        except ImageReadError as err:
            raise ImageReadError(f"cannot read image {info.id} ({info.path}): {err}") from err
        if pixels.shape[:2] != (info.height, info.width):
            raise ImageReadError(
                f"image {info.id} ({info.path}) is {pixels.shape[0]}x{pixels.shape[1]} (HxW) but its "
                f"annotations are for {info.height}x{info.width}; has it changed since they were loaded?"
            )
        image = (
            torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).to(torch.float32).div_(255.0)
        )
        target = self.target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def target(self, index: int) -> Target:
        """The instances of item ``index`` without reading its pixels and without ``transforms`` (for a
        trainer that has the image's features already)."""
        info = self.images[index]
        instances = [a for a in info.annotations if not a.iscrowd]
        masks = torch.zeros((len(instances), info.height, info.width), dtype=torch.uint8)
        for mask, annotation in zip(masks, instances, strict=True):
            # Decoding the crop alone and pasting it is 10x faster on large photos than pycocotools'
            # full-image decode (which also needs a transposing copy from its (H, W, N) Fortran layout).
            cropped = annotation.mask
            x0, y0, x1, y1 = cropped.crop_box
            mask[y0:y1, x0:x1] = torch.from_numpy(cropped.mask)
        return {
            "boxes": torch.tensor([a.bbox for a in instances], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([a.label for a in instances], dtype=torch.int64),
            "masks": masks,
            "image_id": info.id,
        }


def collate_detection(batch: list[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Batch ``(image, target)`` items as two lists (images differ in size, so they are not stacked)."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets
