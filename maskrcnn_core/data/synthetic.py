"""Synthetic instance-segmentation data: coloured shapes on textured backgrounds, with exact masks.

For tests, benchmarks and the demo model. ``generate_synthetic_dataset(out, num_images=..., seed=...)``
writes::

    out/<split_name>.json              COCO instances, masks as compressed RLE
    out/images/<split_name>_000000.png ...

so ``load_coco(out / "train.json", out / "images")`` reads it back, and several splits (different
``split_name`` and ``seed``) can share one folder. Everything is drawn from ``numpy.random`` seeded by
``(seed, image index)``: the same seed gives byte-identical JSON and PNG files, and the first ``n``
images do not depend on ``num_images``.

Shapes are filled without anti-aliasing, so a mask is exactly the pixels painted in the shape's colour.
Later shapes occlude earlier ones (the masks of earlier shapes lose the covered pixels); a shape that
would hide more than ``1 - MIN_VISIBLE_FRACTION`` of an earlier one is not placed, so every painted
object is annotated. Rings have holes through which what lies beneath shows.

Command line: ``python -m maskrcnn_core.data.synthetic OUT --num-images N --seed S``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from maskrcnn_core.data.coco import CocoAnnotation, CocoImage, write_coco
from maskrcnn_core.types import Category, ClassMap, CroppedMask

#: an instance must keep this share of its own pixels visible, and at least MIN_AREA pixels
MIN_VISIBLE_FRACTION = 0.4
MIN_AREA = 24
#: shape radius range, as a fraction of the image's shorter side
RADIUS_RANGE = (0.07, 0.2)
_SUBPIXEL_BITS = 4  # cv2 drawing with sub-pixel vertex precision (coordinates * 16)
_ONE = 1 << _SUBPIXEL_BITS

#: draws one shape into an (H, W) uint8 canvas: (canvas, cx, cy, radius, angle in radians, rng)
Drawer = Callable[[np.ndarray, float, float, float, float, np.random.Generator], None]


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _regular_polygon(n: int, inner: float | None = None) -> Drawer:
    """A drawer for a regular ``n``-gon (a star of ``n`` points when ``inner`` radius ratio is given)."""

    def draw(
        mask: np.ndarray, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator
    ) -> None:
        k = 2 * n if inner else n
        radii = np.where(np.arange(k) % 2, inner, 1.0) * r if inner else np.full(k, r)
        t = angle + np.arange(k) * 2 * math.pi / k
        points = np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)
        cv2.fillPoly(mask, [_fixed(points)], 1, cv2.LINE_8, _SUBPIXEL_BITS)

    return draw


def _circle(mask: np.ndarray, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator) -> None:
    cv2.circle(mask, tuple(_fixed(np.array([cx, cy]))), int(r * _ONE), 1, -1, cv2.LINE_8, _SUBPIXEL_BITS)


def _ring(mask: np.ndarray, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator) -> None:
    _circle(mask, cx, cy, r, angle, rng)
    center = tuple(_fixed(np.array([cx, cy])))
    cv2.circle(mask, center, int(r * rng.uniform(0.4, 0.6) * _ONE), 0, -1, cv2.LINE_8, _SUBPIXEL_BITS)


def _ellipse(
    mask: np.ndarray, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator
) -> None:
    axes = tuple(_fixed(np.array([r, r * rng.uniform(0.35, 0.6)])))
    center = tuple(_fixed(np.array([cx, cy])))
    cv2.ellipse(mask, center, axes, math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, _SUBPIXEL_BITS)


#: the shape classes this generator can draw, by class name
SHAPES: dict[str, Drawer] = {
    "circle": _circle,
    "square": _regular_polygon(4),
    "triangle": _regular_polygon(3),
    "ring": _ring,
    "ellipse": _ellipse,
    "hexagon": _regular_polygon(6),
    "star": _regular_polygon(5, inner=0.45),
}


def generate_synthetic_dataset(
    out_dir: str | Path,
    *,
    num_images: int,
    seed: int,
    image_size: tuple[int, int] = (192, 256),
    class_names: Sequence[str] = ("circle", "square", "triangle", "ring"),
    category_ids: Sequence[int] | None = None,
    min_objects: int = 1,
    max_objects: int = 6,
    split_name: str = "train",
) -> Path:
    """Draw ``num_images`` images of ``image_size`` ``(H, W)`` and write them with their COCO JSON.

    ``class_names`` are keys of :data:`SHAPES`; ``category_ids`` (default ``1..K``) are their COCO ids.
    Each image holds up to ``max_objects`` shapes (at least ``min_objects`` unless the image is too
    crowded to fit them). Returns the JSON path; the images are in ``out_dir / "images"``.
    """
    class_names = tuple(class_names)
    category_ids = tuple(range(1, len(class_names) + 1)) if category_ids is None else tuple(category_ids)
    _check_arguments(
        num_images, seed, image_size, class_names, category_ids, min_objects, max_objects, split_name
    )
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    categories = [Category(i, name) for i, name in zip(category_ids, class_names, strict=True)]
    # the labels that loading the written file gives (categories sorted by id, as CocoData keeps them)
    class_map = ClassMap(tuple(sorted(categories, key=lambda c: c.id)))
    drawers = [SHAPES[name] for name in class_names]
    yy, xx = np.mgrid[0 : image_size[0], 0 : image_size[1]].astype(np.float32)
    grid = (yy / image_size[0] - 0.5, xx / image_size[1] - 0.5)

    images = []
    next_ann_id = 1
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        pixels, instances = _draw_image(rng, image_size, grid, drawers, min_objects, max_objects)
        file_name = f"{split_name}_{index:06d}.png"
        path = images_dir / file_name
        # cv2 wants BGR. Noise defeats LZ77 matching, so Huffman coding alone is as small and 1.5x faster.
        png_params = [
            cv2.IMWRITE_PNG_COMPRESSION,
            1,
            cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
        ]
        ok, png = cv2.imencode(".png", pixels[:, :, ::-1], png_params)
        if not ok:
            raise OSError(f"could not encode {path} as PNG")
        path.write_bytes(png.tobytes())
        annotations = []
        for class_index, full_mask in instances:
            cat_id = category_ids[class_index]
            mask = CroppedMask.from_full(full_mask)
            label = class_map.category_id_to_label(cat_id)
            annotations.append(CocoAnnotation.from_mask(next_ann_id, cat_id, label, mask))
            next_ann_id += 1
        images.append(CocoImage(index + 1, file_name, path, image_size[0], image_size[1], tuple(annotations)))

    json_path = out_dir / f"{split_name}.json"
    info = {"description": "Mask R-CNN Studio synthetic shapes", "seed": seed, "split": split_name}
    write_coco(json_path, images, categories, info=info)
    return json_path


def _check_arguments(
    num_images: int,
    seed: int,
    image_size: tuple[int, int],
    class_names: tuple[str, ...],
    category_ids: tuple[int, ...],
    min_objects: int,
    max_objects: int,
    split_name: str,
) -> None:
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (H, W) with both at least 32 pixels, got {image_size}")
    unknown = [name for name in class_names if name not in SHAPES]
    if not class_names or unknown:
        raise ValueError(f"class_names must be some of {sorted(SHAPES)}, got {list(class_names)}")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be unique, got {list(class_names)}")
    if len(category_ids) != len(class_names) or len(set(category_ids)) != len(category_ids):
        raise ValueError(
            f"category_ids must be {len(class_names)} unique ids, one per class, got {list(category_ids)}"
        )
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
    if not split_name or not split_name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"split_name must be letters, digits, '-' or '_', got {split_name!r}")


def _draw_image(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    grid: tuple[np.ndarray, np.ndarray],
    drawers: Sequence[Drawer],
    min_objects: int,
    max_objects: int,
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """An ``(H, W, 3)`` uint8 RGB image and its instances ``(class index, (H, W) bool visible mask)``.

    ``grid`` is ``(y, x)``: two ``(H, W)`` float32 arrays of pixel coordinates scaled to ``[-0.5, 0.5)``.
    """
    height, width = image_size
    yy, xx = grid
    pixels = _background(rng, xx, yy)
    wanted = int(rng.integers(min_objects, max_objects + 1))
    instances: list[tuple[int, np.ndarray]] = []
    own_areas: list[int] = []  # each instance's area before later shapes covered it
    canvas = np.zeros((height, width), dtype=np.uint8)
    for _ in range(20 * wanted):  # a crowded image may not fit every wanted shape
        if len(instances) == wanted:
            break
        class_index = int(rng.integers(len(drawers)))
        radius = rng.uniform(*RADIUS_RANGE) * min(height, width)
        cx, cy, angle = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, 2 * math.pi)
        canvas[:] = 0
        drawers[class_index](canvas, cx, cy, radius, angle, rng)
        shape = canvas.astype(bool)
        area = int(np.count_nonzero(shape))
        if area < MIN_AREA:
            continue
        remaining = [int(np.count_nonzero(mask & ~shape)) for _, mask in instances]
        if any(
            r < max(MIN_AREA, MIN_VISIBLE_FRACTION * a) for r, a in zip(remaining, own_areas, strict=True)
        ):
            continue  # it would hide an earlier shape
        for _, mask in instances:
            mask &= ~shape
        instances.append((class_index, shape))
        own_areas.append(area)
        _paint(rng, pixels, shape, xx, yy)
    pixels += 4.0 * rng.standard_normal(pixels.shape, dtype=np.float32)  # sensor-like noise
    return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8), instances


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` float32 texture: a muted tint, a linear gradient, blotches and distractor lines."""
    height, width = xx.shape
    base = rng.uniform(70, 190) + rng.uniform(-20, 20, size=3)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = rng.uniform(20, 60) * (xx * math.cos(direction) + yy * math.sin(direction))
    pixels = base.astype(np.float32) + ramp[:, :, None]
    blotches = rng.standard_normal((6, 8, 3), dtype=np.float32)
    pixels += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_LINEAR) * rng.uniform(6, 20)
    for _ in range(int(rng.integers(3, 9))):
        p0 = (int(rng.integers(width)), int(rng.integers(height)))
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.line(pixels, p0, p1, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return pixels


def _paint(
    rng: np.random.Generator, pixels: np.ndarray, shape: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> None:
    """Fill ``shape`` with a saturated colour under a soft linear shading, in place."""
    hue = rng.uniform(0.0, 1.0, size=3)
    hue = (hue - hue.min()) / max(float(np.ptp(hue)), 1e-6)
    saturation, value = rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0)
    colour = 255.0 * value * (saturation * hue + (1.0 - saturation))
    direction = rng.uniform(0, 2 * math.pi)
    shading = 1.0 + rng.uniform(0.0, 0.5) * (
        xx[shape] * math.cos(direction) + yy[shape] * math.sin(direction)
    )
    pixels[shape] = colour.astype(np.float32) * shading[:, None]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m maskrcnn_core.data.synthetic",
        description="Write a synthetic instance-segmentation set: OUT/<split>.json and OUT/images/*.png.",
        epilog="example: python -m maskrcnn_core.data.synthetic data/shapes --num-images 200 --seed 0",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--num-images", type=int, required=True, help="how many images to draw")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same files)")
    parser.add_argument("--split", default="train", help="split name: names the JSON and image files")
    parser.add_argument("--height", type=int, default=192, help="image height in pixels")
    parser.add_argument("--width", type=int, default=256, help="image width in pixels")
    parser.add_argument(
        "--classes",
        nargs="+",
        default=["circle", "square", "triangle", "ring"],
        choices=sorted(SHAPES),
        help="shape classes, in category-id order",
    )
    parser.add_argument("--min-objects", type=int, default=1, help="fewest shapes per image (0: some empty)")
    parser.add_argument("--max-objects", type=int, default=6, help="most shapes per image")
    args = parser.parse_args(argv)
    try:
        path = generate_synthetic_dataset(
            args.out,
            num_images=args.num_images,
            seed=args.seed,
            image_size=(args.height, args.width),
            class_names=args.classes,
            min_objects=args.min_objects,
            max_objects=args.max_objects,
            split_name=args.split,
        )
    except ValueError as err:
        parser.error(str(err))
    print(path)


if __name__ == "__main__":
    main()
