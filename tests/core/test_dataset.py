"""InstanceDataset and the joint transforms, checked against pycocotools and torchvision.transforms.v2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes as tv_masks_to_boxes
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from maskrcnn_core.data.coco import load_coco
from maskrcnn_core.data.dataset import InstanceDataset, collate_detection
from maskrcnn_core.data.synthetic import generate_synthetic_dataset
from maskrcnn_core.data.transforms import Compose, RandomHorizontalFlip, RandomScale, masks_to_boxes

H, W = 40, 60


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _ann(ann_id: int, image_id: int, category_id: int, segmentation: list | dict, **extra: object) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        **extra,
    }


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    """Image 1: two instances and a crowd region; image 2: only a crowd region; image 3: nothing."""
    for i in (1, 2, 3):
        pixels = np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), pixels)
    dataset = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in (1, 2, 3)],
        "categories": [{"id": 11, "name": "a"}, {"id": 22, "name": "b"}],
        "annotations": [
            _ann(1, 1, 22, [[4, 4, 30, 4, 30, 20, 4, 20]], iscrowd=0),
            _ann(2, 1, 11, _rle(_box_mask(35, 10, 50, 39)), iscrowd=0),
            _ann(3, 1, 11, _rle(_box_mask(0, 30, 20, 40)), iscrowd=1),
            _ann(4, 2, 22, _rle(_box_mask(0, 0, 10, 10)), iscrowd=True),
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dataset))
    return path


def test_items_have_documented_shapes_and_match_pycocotools(coco_file: Path) -> None:
    data, _ = load_coco(coco_file, coco_file.parent)
    dataset = InstanceDataset(data)
    assert len(dataset) == 3 and dataset.image_ids == [1, 2, 3] and dataset.num_classes == 2

    image, target = dataset[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    pixels = cv2.imread(str(coco_file.parent / "1.png"))[:, :, ::-1]
    torch.testing.assert_close(image, torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)

    assert target["image_id"] == 1
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [2, 1], "22 -> 2, 11 -> 1"
    assert target["masks"].shape == (2, H, W) and target["masks"].dtype == torch.uint8
    assert target["boxes"].shape == (2, 4) and target["boxes"].dtype == torch.float32
    reference = COCO(str(coco_file))
    for i, ann_id in enumerate((1, 2)):  # the crowd region (3) is left out
        expected = reference.annToMask(reference.anns[ann_id])
        np.testing.assert_array_equal(target["masks"][i].numpy(), expected)
    # Tight boxes with exclusive x2/y2: torchvision's masks_to_boxes gives the last pixel's index.
    torch.testing.assert_close(
        target["boxes"], tv_masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1.0])
    )

    _, crowd_only = dataset[1]
    assert crowd_only["boxes"].shape == (0, 4) and crowd_only["labels"].shape == (0,)
    assert crowd_only["masks"].shape == (0, H, W)


def test_include_empty_false_drops_images_without_trainable_instances(coco_file: Path) -> None:
    data, _ = load_coco(coco_file, coco_file.parent)
    assert InstanceDataset(data, include_empty=False).image_ids == [1]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 30, 3), np.uint8)  # 30 wide, 20 tall as stored; left third red
    stored[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: 20 wide, 30 tall, red on top
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    top = _rle(np.pad(np.ones((10, 20), bool), ((0, 20), (0, 0))))
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "turned.jpg", "height": 30, "width": 20}],
        "categories": [{"id": 1, "name": "red"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": top}],
    }))  # fmt: skip
    data, report = load_coco(tmp_path / "ann.json", tmp_path)
    assert report.issues == [], report.summary()

    image, target = InstanceDataset(data)[0]
    assert image.shape == (3, 30, 20)
    red = image[:, target["masks"][0].bool()]
    assert red[0].mean() > 0.9 and red[1:].mean() < 0.1, "the annotated region must be the red one"


def test_unreadable_image_at_load_time_names_the_file(coco_file: Path) -> None:
    data, _ = load_coco(coco_file, coco_file.parent)
    (coco_file.parent / "2.png").write_bytes(b"truncated")
    dataset = InstanceDataset(data)
    with pytest.raises(ValueError, match=r"cannot read image 2 \(.*2\.png\)"):
        dataset[1]


def test_dataloader_batches_with_collate_detection(tmp_path: Path) -> None:
    json_path = generate_synthetic_dataset(tmp_path, num_images=5, seed=0, image_size=(64, 96))
    data, _ = load_coco(json_path, tmp_path / "images")
    transforms = Compose([RandomHorizontalFlip(0.5), RandomScale(0.5, 1.5)])
    loader = DataLoader(
        InstanceDataset(data, transforms=transforms), batch_size=2, collate_fn=collate_detection
    )
    batches = list(loader)

    assert [len(images) for images, _ in batches] == [2, 2, 1]
    for images, targets in batches:
        for image, target in zip(images, targets, strict=True):
            assert image.shape == (3, 64, 96)
            n = len(target["labels"])
            assert target["masks"].shape == (n, 64, 96) and target["boxes"].shape == (n, 4)
            assert set(target["labels"].tolist()) <= {1, 2, 3, 4}
            torch.testing.assert_close(target["boxes"], masks_to_boxes(target["masks"]))


def _instances() -> tuple[torch.Tensor, dict]:
    """A (3, H, W) image whose pixels are coloured per instance, and the matching target."""
    masks = torch.zeros((3, H, W), dtype=torch.uint8)
    masks[0, 5:20, 3:25] = 1
    masks[1, 22:39, 30:58] = 1
    masks[1, 30:35, 40:45] = 0  # a hole
    masks[2, 0:8, 50:60] = 1
    image = torch.rand(3, H, W) * 0.2
    for i, colour in enumerate(([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])):
        image[:, masks[i].bool()] = torch.tensor(colour)[:, None]
    target = {
        "boxes": masks_to_boxes(masks),
        "labels": torch.tensor([1, 2, 3]),
        "masks": masks,
        "image_id": 5,
    }
    return image, target


def test_flip_matches_torchvision() -> None:
    image, target = _instances()
    flipped, out = RandomHorizontalFlip(p=1.0)(image, target)

    torch.testing.assert_close(flipped, TF.horizontal_flip(image))
    torch.testing.assert_close(
        out["masks"], TF.horizontal_flip(tv_tensors.Mask(target["masks"])).as_subclass(torch.Tensor)
    )
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(H, W))
    torch.testing.assert_close(out["boxes"], TF.horizontal_flip(boxes).as_subclass(torch.Tensor))
    torch.testing.assert_close(out["boxes"], masks_to_boxes(out["masks"]))
    assert out["image_id"] == 5 and out["labels"].tolist() == [1, 2, 3]

    same, untouched = RandomHorizontalFlip(p=0.0)(image, target)
    assert same is image and untouched is target


@pytest.mark.parametrize("scale", [0.6, 1.7])
def test_scale_matches_torchvision_resize_then_crop(scale: float) -> None:
    image, target = _instances()
    out_image, out = RandomScale(scale, scale)(image, target)

    size = [round(H * scale), round(W * scale)]
    resized = TF.resize(image, size, antialias=True)
    resized_masks = TF.resize(
        tv_tensors.Mask(target["masks"]), size, interpolation=InterpolationMode.NEAREST_EXACT
    )
    # torchvision's crop zero-pads where the window leaves the image: the same as our crop-or-pad
    windows = [(t, left) for t in range(max(1, size[0] - H + 1)) for left in range(max(1, size[1] - W + 1))]
    matches = [
        (t, left)
        for t, left in windows
        if torch.allclose(out_image, TF.crop(resized, t, left, H, W), atol=1e-6)
    ]
    assert len(matches) == 1, "the output must be one window of torchvision's resize"
    top, left = matches[0]
    expected_masks = TF.crop(resized_masks, top, left, H, W).as_subclass(torch.Tensor)
    keep = expected_masks.flatten(1).any(dim=1).bool()
    torch.testing.assert_close(out["masks"], expected_masks[keep])
    torch.testing.assert_close(out["labels"], target["labels"][keep])
    torch.testing.assert_close(out["boxes"], tv_masks_to_boxes(out["masks"]) + torch.tensor([0, 0, 1, 1.0]))
    assert out_image.shape == image.shape and out["image_id"] == 5


def test_scale_drops_instances_that_vanish() -> None:
    image, target = _instances()
    target["masks"][2] = 0
    target["masks"][2, 0, 59] = 1  # one pixel, between the pixels that a 20x shrink samples
    _, out = RandomScale(0.05, 0.05)(image, target)
    assert out["labels"].tolist() == [1, 2]
    assert out["masks"].shape == (2, H, W) and out["boxes"].shape == (2, 4)


def test_transforms_handle_images_without_instances() -> None:
    image = torch.rand(3, H, W)
    target = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros((0, H, W), dtype=torch.uint8), "image_id": 1}  # fmt: skip
    out_image, out = Compose([RandomHorizontalFlip(1.0), RandomScale(0.5, 2.0)])(image, target)
    assert out_image.shape == (3, H, W)
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, H, W) and out["labels"].shape == (0,)


def test_random_draws_come_from_torch() -> None:
    image, target = _instances()
    pipeline = Compose([RandomHorizontalFlip(0.5), RandomScale(0.5, 1.5)])

    def run() -> list[torch.Tensor]:
        return [pipeline(image, target)[0] for _ in range(6)]

    torch.manual_seed(3)
    first = run()
    torch.manual_seed(3)
    second = run()
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(first[0], other) for other in first[1:]), "draws must differ between calls"

    seeded = [RandomScale(0.5, 1.5, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(seeded[0](image, target)[0], seeded[1](image, target)[0])


def test_bad_transform_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="0 < min_scale <= max_scale"):
        RandomScale(1.5, 0.5)
    with pytest.raises(ValueError, match="non-empty masks"):
        masks_to_boxes(torch.zeros((1, 4, 4), dtype=torch.uint8))
