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


#: object widths in a large scene, pixels: the demo model's shapes at the size it saw them in training
LARGE_SCENE_OBJECT_SIZE = (20, 60)
#: ``maskrcnn-core synthetic`` draws a large scene for a side this long or longer
LARGE_SCENE_MIN_SIDE = 2048
#: a large scene's default object count: one object per this many pixels (400 x 400)
LARGE_SCENE_AREA_PER_OBJECT = 400 * 400
#: image formats a large scene is written in: a tiled TIFF (256 x 256 tiles, deflate) or a PNG
LARGE_SCENE_FORMATS = ("tif", "png")
_BAND_ROWS = 512  # the background is drawn this many rows at a time
_TEXTURE_CELL = 32  # the blotches' scale, pixels: a 192 x 256 training image has 6 x 8 of them


def generate_large_scene(
    out_dir: str | Path,
    *,
    height: int,
    width: int,
    num_objects: int,
    seed: int,
    num_images: int = 1,
    class_names: Sequence[str] = ("circle", "square", "triangle", "ring"),
    object_size: tuple[int, int] = LARGE_SCENE_OBJECT_SIZE,
    image_format: str = "tif",
    split_name: str = "scene",
) -> Path:
    """Large images (``height`` x ``width``, e.g. 8000 x 8000) of ``num_objects`` small shapes each, and
    their COCO JSON, in the layout of :func:`generate_synthetic_dataset` (``out_dir/<split_name>.json``,
    ``out_dir/images/<split_name>_000000.tif`` ...). Returns the JSON path.

    The shapes, colours, texture and noise are those of the training images, at their training size:
    objects ``object_size`` pixels wide, on a background whose blotches and lines have the scale they have
    in a 192 x 256 image. Shapes do not overlap (a crowded scene gets fewer than ``num_objects``; the JSON
    holds what was placed). Drawn in bands and per object, so memory stays near one uint8 image's own.
    """
    class_names = tuple(class_names)
    ids = tuple(range(1, len(class_names) + 1))
    _check_arguments(num_images, seed, (height, width), class_names, ids, 0, 0, split_name)
    if num_objects < 0:
        raise ValueError(f"num_objects must be at least 0, got {num_objects}")
    if not 4 <= object_size[0] <= object_size[1] < min(height, width):
        raise ValueError(f"object_size must be (smallest, largest) within the image, got {object_size}")
    if image_format not in LARGE_SCENE_FORMATS:
        formats = ", ".join(LARGE_SCENE_FORMATS)
        raise ValueError(f"image_format must be one of {formats}, got {image_format!r}")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    categories = [Category(i, name) for i, name in zip(ids, class_names, strict=True)]
    images = []
    next_ann_id = 1
    for index in range(num_images):
        rng = np.random.default_rng([seed, index, height, width])
        pixels = _large_background(rng, height, width)
        instances = _place_small_shapes(rng, pixels, class_names, num_objects, object_size)
        file_name = f"{split_name}_{index:06d}.{image_format}"
        path = images_dir / file_name
        _write_large_image(path, pixels)
        del pixels
        annotations = []
        for class_index, mask in instances:
            annotations.append(CocoAnnotation.from_mask(next_ann_id, ids[class_index], class_index + 1, mask))
            next_ann_id += 1
        images.append(CocoImage(index + 1, file_name, path, height, width, tuple(annotations)))
    info = {"description": "Mask R-CNN Studio synthetic large scenes", "seed": seed, "split": split_name}
    json_path = out_dir / f"{split_name}.json"
    write_coco(json_path, images, categories, info=info)
    return json_path


def _place_small_shapes(
    rng: np.random.Generator,
    pixels: np.ndarray,
    class_names: tuple[str, ...],
    num_objects: int,
    object_size: tuple[int, int],
) -> list[tuple[int, CroppedMask]]:
    """Paint up to ``num_objects`` non-overlapping shapes into ``pixels`` (in place), each drawn on a
    canvas of its own box; returns ``(class index, mask)`` per shape."""
    height, width = pixels.shape[:2]
    drawers = [SHAPES[name] for name in class_names]
    instances: list[tuple[int, CroppedMask]] = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(30 * num_objects):
        if len(instances) == num_objects:
            break
        radius = rng.uniform(*object_size) / 2
        pad = int(math.ceil(radius)) + 2
        cx, cy = rng.uniform(pad, width - pad), rng.uniform(pad, height - pad)
        x0, y0 = int(cx) - pad, int(cy) - pad
        box = (x0, y0, x0 + 2 * pad + 1, y0 + 2 * pad + 1)
        if any(_boxes_meet(box, other, margin=2) for other in placed):
            continue
        class_index = int(rng.integers(len(drawers)))
        canvas = np.zeros((box[3] - y0, box[2] - x0), dtype=np.uint8)
        drawers[class_index](canvas, cx - x0, cy - y0, radius, rng.uniform(0, 2 * math.pi), rng)
        shape = canvas.astype(bool)
        if np.count_nonzero(shape) < MIN_AREA:
            continue
        placed.append(box)
        yy, xx = np.mgrid[0 : shape.shape[0], 0 : shape.shape[1]].astype(np.float32)
        local = np.zeros((*shape.shape, 3), dtype=np.float32)
        _paint(rng, local, shape, xx / shape.shape[1] - 0.5, yy / shape.shape[0] - 0.5)
        local += 4.0 * rng.standard_normal(local.shape, dtype=np.float32)  # the training images' noise
        pixels[y0 : box[3], x0 : box[2]][shape] = np.clip(local[shape], 0, 255).astype(np.uint8)
        crop = CroppedMask.from_full(shape)
        instances.append((class_index, CroppedMask(crop.x0 + x0, crop.y0 + y0, crop.mask, (height, width))))
    return instances


def _boxes_meet(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _large_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 texture like the training images' (tint, blotches, lines, sensor noise),
    with the scale it has there, drawn :data:`_BAND_ROWS` rows at a time."""
    cell = _TEXTURE_CELL
    # tint and gradient vary over a training image's size (256 px), blotches over a cell
    tint = rng.uniform(70, 190, size=(height // 256 + 2, width // 256 + 2, 1)) + rng.uniform(
        -20, 20, size=(height // 256 + 2, width // 256 + 2, 3)
    )
    blotches = rng.standard_normal((height // cell + 2, width // cell + 2, 3)) * rng.uniform(6, 20)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    for y0 in range(0, height, _BAND_ROWS):
        y1 = min(height, y0 + _BAND_ROWS)
        band = _sample_rows(tint.astype(np.float32), y0, y1, 256, width) + _sample_rows(
            blotches.astype(np.float32), y0, y1, cell, width
        )
        band += 4.0 * rng.standard_normal(band.shape, dtype=np.float32)
        pixels[y0:y1] = np.clip(band, 0, 255).astype(np.uint8)
    for _ in range(max(1, height * width // (192 * 256)) * 5):  # about as many lines per area as in training
        x, y = int(rng.integers(width)), int(rng.integers(height))
        length, angle = rng.uniform(30, 200), rng.uniform(0, 2 * math.pi)
        end = (int(x + length * math.cos(angle)), int(y + length * math.sin(angle)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.line(pixels, (x, y), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return pixels


def _sample_rows(grid: np.ndarray, y0: int, y1: int, cell: int, width: int) -> np.ndarray:
    """Rows ``y0..y1`` of ``grid`` (one value per ``cell`` pixels) interpolated linearly to full size."""
    ys = np.arange(y0, y1, dtype=np.float32) / cell
    i = np.floor(ys).astype(np.int64)
    t = (ys - i)[:, None, None]
    rows = grid[i] * (1 - t) + grid[i + 1] * t  # (band, grid width, 3)
    xs = np.arange(width, dtype=np.float32) / cell
    j = np.floor(xs).astype(np.int64)
    u = (xs - j)[None, :, None]
    return rows[:, j] * (1 - u) + rows[:, j + 1] * u


def _write_large_image(path: Path, pixels: np.ndarray) -> None:
    """A tiled, deflate-compressed TIFF (BigTIFF past 4 GB) that tiled inference reads a region at a time,
    or a PNG (cv2 wants BGR; Huffman coding only, as for the training images)."""
    if path.suffix == ".tif":
        import tifffile

        tifffile.imwrite(
            path,
            pixels,
            tile=(256, 256),
            compression="zlib",
            compressionargs={"level": 1},
            photometric="rgb",
            bigtiff=pixels.nbytes > 2**32 - 2**25,
        )
        return
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    if not cv2.imwrite(str(path), pixels[:, :, ::-1], params):
        raise OSError(f"could not write {path}")


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
