"""``maskrcnn-studio --demo``: a folder of synthetic shapes in the user cache, opened with the demo model."""

from __future__ import annotations

from pathlib import Path

from app.project.locations import user_cache_dir

DEMO_IMAGES = 16
DEMO_SEED = 0


def demo_folder() -> Path:
    """The demo images folder, generated on first use (a second or so) and reused afterwards."""
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset

    root = user_cache_dir() / "demo"
    images = root / "images"
    if len(list(images.glob("*.png"))) < DEMO_IMAGES:
        generate_synthetic_dataset(root, num_images=DEMO_IMAGES, seed=DEMO_SEED, image_size=(384, 512))
    return images
