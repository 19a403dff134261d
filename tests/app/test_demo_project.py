"""The ``--demo`` project: created with part of its ground truth imported and verified, once."""

from __future__ import annotations

import json

from app.project.demo import DEMO_IMAGES, DEMO_VERIFIED, demo_folder, seed_demo_project
from app.project.records import ImageStatus
from app.project.store import ProjectStore
from app.project.training_set import build_training_set


def test_new_demo_project_has_ground_truth_verified_and_images_left_for_the_model():
    folder = demo_folder()
    assert seed_demo_project(folder) == DEMO_VERIFIED
    ground_truth = json.loads((folder.parent / "train.json").read_text())
    names = sorted(image["file_name"] for image in ground_truth["images"])
    store = ProjectStore.open(folder)
    try:
        store.add_images(names)  # what the window's scan does when it opens the folder
        by_status = {
            status: [im.file_name for im in store.images() if im.status == status] for status in ImageStatus
        }
        assert by_status[ImageStatus.VERIFIED] == names[:DEMO_VERIFIED]
        assert len(by_status[ImageStatus.NEW]) == DEMO_IMAGES - DEMO_VERIFIED
        first = store.image_by_name(names[0])
        first_id = _id_of(ground_truth, names[0])
        expected = sum(1 for a in ground_truth["annotations"] if a["image_id"] == first_id)
        assert len(store.instances(first.id)) == expected > 0
    finally:
        store.close()


def test_a_user_edit_in_the_demo_project_survives_the_next_start():
    folder = demo_folder()
    seed_demo_project(folder)
    store = ProjectStore.open(folder)
    try:
        first = store.images()[0]
        store.set_verified(first.id, False)  # the user takes one image back
    finally:
        store.close()
    assert seed_demo_project(folder) == 0  # the next --demo start changes nothing
    store = ProjectStore.open(folder)
    try:
        assert store.image(first.id).status != ImageStatus.VERIFIED
    finally:
        store.close()


def test_the_demo_project_can_be_fine_tuned_at_once(tmp_path):
    """Model > Fine-tune on a fresh demo finds the verified images and their objects, each once."""
    folder = demo_folder()
    seed_demo_project(folder)
    ground_truth = json.loads((folder.parent / "train.json").read_text())
    names = sorted(image["file_name"] for image in ground_truth["images"])[:DEMO_VERIFIED]
    expected = sum(
        1 for a in ground_truth["annotations"] if a["image_id"] in {_id_of(ground_truth, n) for n in names}
    )
    store = ProjectStore.open(folder)
    try:
        store.add_images(sorted(image["file_name"] for image in ground_truth["images"]))
        training_set = build_training_set(store, tmp_path / "run")
    finally:
        store.close()
    assert sorted(training_set.train_images + training_set.val_images) == names
    assert training_set.val_images and training_set.train_images
    assert training_set.num_annotations == expected  # the imported truth only, nothing doubled


def _id_of(coco: dict, file_name: str) -> int:
    return next(image["id"] for image in coco["images"] if image["file_name"] == file_name)
