"""``maskrcnn-studio --demo``: a folder of synthetic shapes in the user cache, opened with the demo model.

The demo sets up the whole loop: when its project is created, the ground truth of the first
:data:`DEMO_VERIFIED` images is imported and marked verified (so Model ▸ Fine-tune has data at once) and
the other images are left for the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.project.coco_io import import_coco
from app.project.locations import user_cache_dir
from app.project.store import ProjectStore

DEMO_IMAGES = 16
DEMO_VERIFIED = 12  # the other DEMO_IMAGES - DEMO_VERIFIED are left for the model
DEMO_SEED = 0
DEMO_SPLIT = "train"  # maskrcnn_core.data.synthetic writes <root>/<split>.json next to images/


def demo_folder() -> Path:
    """The demo images folder, generated on first use (a second or so) and reused afterwards."""
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    root = user_cache_dir() / "demo"
    images = root / "images"
    if len(list(images.glob("*.png"))) < DEMO_IMAGES or not (root / f"{DEMO_SPLIT}.json").is_file():
        generate_synthetic_dataset(
            root, num_images=DEMO_IMAGES, seed=DEMO_SEED, image_size=(384, 512), split_name=DEMO_SPLIT
        )
    return images


def seed_demo_project(images: Path) -> int:
    """Import the ground truth of the first :data:`DEMO_VERIFIED` demo images and verify them, once: only
    when the demo project is new (it holds no image yet), so a user's edits in the demo are kept.

    Returns how many images were verified (0 when the project already existed). Raises
    ``ProjectLockedError`` when the demo is open elsewhere and ``ValueError`` for an unusable file.
    """
    ground_truth = images.parent / f"{DEMO_SPLIT}.json"
    store = ProjectStore.open(images)
    try:
        if store.images():
            return 0
        subset = images.parent / "demo_verified.json"
        _write_subset(ground_truth, subset, DEMO_VERIFIED)
        import_coco(store, subset)
        verified = store.images()
        for image in verified:
            store.set_verified(image.id, True)
        return len(verified)
    finally:
        store.close()


def _write_subset(coco_path: Path, out: Path, count: int) -> None:
    """``coco_path`` cut down to its first ``count`` images (by file name) and their annotations."""
    from maskrcnn_core.data.coco import write_json_atomic  # numpy/cv2 only, no torch

    data = json.loads(coco_path.read_text(encoding="utf-8"))
    images = sorted(data["images"], key=lambda image: image["file_name"])[:count]
    kept = {image["id"] for image in images}
    data["images"] = images
    data["annotations"] = [ann for ann in data["annotations"] if ann["image_id"] in kept]
    write_json_atomic(out, data)
