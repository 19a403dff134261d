"""The synthetic shapes generator: deterministic, fast, valid COCO, exact non-overlapping masks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from maskrcnn_core.data.coco import load_coco
from maskrcnn_core.data.synthetic import MIN_AREA, SHAPES, generate_synthetic_dataset
from maskrcnn_core.types import Category

REPO_ROOT = Path(__file__).resolve().parents[2]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_synthetic_dataset(tmp_path / name, num_images=6, seed=5)
    generate_synthetic_dataset(tmp_path / "c", num_images=6, seed=6)

    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(_digest(tmp_path / "a")) == 7  # the JSON and six PNGs
    differing = {k for k, v in _digest(tmp_path / "a").items() if _digest(tmp_path / "c")[k] != v}
    assert len(differing) == 7, "another seed must give other images"


def test_first_images_do_not_depend_on_how_many_are_drawn(tmp_path: Path) -> None:
    generate_synthetic_dataset(tmp_path / "few", num_images=2, seed=1)
    generate_synthetic_dataset(tmp_path / "many", num_images=5, seed=1)
    for name in ("train_000000.png", "train_000001.png"):
        assert (tmp_path / "few/images" / name).read_bytes() == (tmp_path / "many/images" / name).read_bytes()


def test_output_is_valid_coco_with_exact_disjoint_masks(tmp_path: Path) -> None:
    json_path = generate_synthetic_dataset(
        tmp_path, num_images=30, seed=0, class_names=("circle", "ring", "star"), category_ids=(30, 10, 20)
    )
    assert json_path == tmp_path / "train.json"
    data, report = load_coco(json_path, tmp_path / "images")

    assert report.issues == [], report.summary()
    assert data.categories == (Category(10, "ring"), Category(20, "star"), Category(30, "circle"))
    assert len(data.images) == 30
    reference = COCO(str(json_path))
    rings_with_holes = 0
    for image in data.images:
        pixels = cv2.imread(str(image.path))
        assert pixels.shape == (192, 256, 3)
        assert 1 <= len(image.annotations) <= 6
        masks = [reference.annToMask(reference.anns[ann.id]).astype(bool) for ann in image.annotations]
        assert (np.sum(masks, axis=0) <= 1).all(), f"instances overlap in image {image.id}"
        for ann, mask in zip(image.annotations, masks, strict=True):
            assert mask.sum() >= MIN_AREA
            assert not ann.iscrowd
            if ann.category_id == 10:
                _, hierarchy = cv2.findContours(
                    mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
                )
                rings_with_holes += bool((hierarchy[0, :, 3] >= 0).any())
    assert rings_with_holes >= 5, "rings must keep their holes"


def test_every_shape_class_can_be_drawn(tmp_path: Path) -> None:
    json_path = generate_synthetic_dataset(
        tmp_path,
        num_images=12,
        seed=2,
        class_names=tuple(SHAPES),
        image_size=(64, 96),
        split_name="all_shapes",
    )
    dataset = json.loads(json_path.read_text())
    assert {c["name"] for c in dataset["categories"]} == set(SHAPES)
    assert {a["category_id"] for a in dataset["annotations"]} == set(range(1, len(SHAPES) + 1))
    assert all(isinstance(a["segmentation"]["counts"], str) for a in dataset["annotations"])


def test_two_hundred_images_take_a_few_seconds(tmp_path: Path) -> None:
    start = time.process_time()
    generate_synthetic_dataset(tmp_path, num_images=200, seed=0, image_size=(256, 256))
    elapsed = time.process_time() - start
    # about 2.5 s of CPU when measured; CPU time, so that other jobs on the machine do not count
    assert elapsed < 8.0, f"200 images took {elapsed:.1f} s of CPU"


def test_command_line_writes_the_dataset(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "maskrcnn_core.data.synthetic", str(tmp_path / "out"), "--num-images", "3",
         "--seed", "4", "--split", "val", "--height", "64", "--width", "80"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "val.json")
    data, report = load_coco(tmp_path / "out" / "val.json", tmp_path / "out" / "images")
    assert report.ok and len(data.images) == 3
    assert (data.images[0].height, data.images[0].width) == (64, 80)

    refused = subprocess.run(
        [sys.executable, "-m", "maskrcnn_core.data.synthetic", str(tmp_path / "bad"), "--num-images", "0",
         "--seed", "4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "num_images must be at least 1" in refused.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 0}, "num_images must be at least 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"class_names": ("circle", "blob")}, "class_names must be some of"),
        ({"class_names": ("circle", "circle")}, "class_names must be unique"),
        ({"category_ids": (1, 1, 2, 3)}, "category_ids must be 4 unique ids"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
        ({"image_size": (16, 64)}, "at least 32 pixels"),
        ({"split_name": "../x"}, "split_name must be"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"num_images": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_synthetic_dataset(tmp_path, **arguments)
