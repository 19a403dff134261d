"""Our model against torchvision's own Mask R-CNN, on real photographs, with the same weights.

torchvision's ``maskrcnn_resnet50_fpn`` (COCO layout) with seeded, calibrated weights (see
``reference_model.py``) is saved to a file and loaded into ours through ``weights=``; both models then see
the same photographs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference_model import PHOTOS, build_reference, load_photo, save_reference

from maskrcnn_core import Predictor, mask_rcnn_resnet_50_fpn
from maskrcnn_core.model.mask_rcnn import LOSS_KEYS


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    # a smaller input size than COCO's 800 keeps the test fast on 2 CPU cores; both models get the same
    return save_reference(tmp_path_factory.mktemp("weights"), min_size=480, max_size=800)


@pytest.fixture(scope="module")
def models(reference_file) -> tuple[torch.nn.Module, torch.nn.Module]:
    reference, path = reference_file
    ours = mask_rcnn_resnet_50_fpn(weights=path, min_size=480, max_size=800)
    return reference, ours.eval()


def test_loaded_weights_are_identical(models) -> None:
    reference, ours = models
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert set(ref_state) == set(our_state)
    for key, value in ref_state.items():
        assert torch.equal(value, our_state[key]), key
    assert ours.config.num_classes == 90
    assert ours.config.class_names[0] == "person" and ours.config.category_ids[0] == 1


@pytest.mark.parametrize("photo", PHOTOS, ids=[p.stem for p in PHOTOS])
def test_predict_matches_torchvision(models, photo: Path) -> None:
    reference, ours = models
    image = load_photo(photo)
    with torch.no_grad():
        expected = reference([image])[0]
    got = ours.predict([image])[0]

    assert len(expected["boxes"]) > 5, (
        "the reference must detect something for the comparison to mean anything"
    )
    assert got["boxes"].shape == expected["boxes"].shape
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(got["labels"], expected["labels"])

    expected_masks = expected["masks"][:, 0] > 0.5
    assert got["masks"].shape == expected_masks.shape and got["masks"].dtype == torch.bool
    agreement = (got["masks"] == expected_masks).float().mean().item()
    assert agreement >= 0.99, f"masks agree on only {agreement:.4%} of pixels"
    # decisive masks: the comparison is not between empty masks
    assert expected_masks.flatten(1).any(dim=1).float().mean() > 0.5


def test_num_classes_of_the_file_gives_torchvisions_detections(reference_file) -> None:
    """Passing the class count the file has (90) keeps its classes and rows: no warning, same output."""
    reference, path = reference_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = mask_rcnn_resnet_50_fpn(num_classes=90, weights=path, min_size=480, max_size=800).eval()
    assert ours.class_map.label_to_name(18) == "dog" and ours.class_map.label_to_category_id(18) == 18
    image = load_photo(PHOTOS[0])
    with torch.no_grad():
        expected = reference.eval()([image])[0]
    got = ours.predict([image])[0]
    assert len(expected["boxes"]) > 5
    torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got["scores"], expected["scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(got["labels"], expected["labels"])


def test_losses_match_torchvision(models) -> None:
    reference, ours = models
    image = load_photo(PHOTOS[1])
    h, w = image.shape[-2:]
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 40:160, 60:200] = 1
    masks[1, 100:260, 150:300] = 1
    target = {
        "boxes": torch.tensor([[60.0, 40.0, 200.0, 160.0], [150.0, 100.0, 300.0, 260.0]]),
        "labels": torch.tensor([1, 17]),
        "masks": masks,
    }
    reference.train()
    ours.train()
    try:
        torch.manual_seed(123)
        expected = reference([image], [dict(target)])
        torch.manual_seed(123)
        # torchvision's transform draws a (single) training size from the RNG even with one min_size;
        # ours resizes deterministically then, so consume that draw to sample the same anchors and RoIs
        torch.empty(1).uniform_()
        got = ours.get_loss([image], [dict(target)])
    finally:
        reference.eval()
        ours.eval()

    assert set(got) == set(LOSS_KEYS)
    pairs = {
        "rpn_cls_loss": "loss_objectness",
        "rpn_reg_loss": "loss_rpn_box_reg",
        "roi_cls_loss": "loss_classifier",
        "roi_reg_loss": "loss_box_reg",
        "mask_loss": "loss_mask",
    }
    for ours_key, ref_key in pairs.items():
        torch.testing.assert_close(got[ours_key], expected[ref_key], rtol=1e-4, atol=1e-6, msg=ours_key)
    torch.testing.assert_close(got["total_loss"], sum(expected.values()), rtol=1e-4, atol=1e-6)


def test_box_prompt_reproduces_the_detected_masks(models) -> None:
    """``forward(rois=...)`` on the detected boxes gives the masks ``predict`` pasted."""
    _, ours = models
    image = load_photo(PHOTOS[2])
    det = ours.detect([image])[0]
    prompted = ours.segment_boxes(image, det["boxes"], det["labels"])
    torch.testing.assert_close(prompted["mask_probs"], det["mask_probs"], rtol=1e-3, atol=1e-4)


def test_the_predictor_on_two_threads_matches_torchvision(tmp_path: Path) -> None:
    """The app's path at torchvision's default 800 px: ``Predictor`` on a uint8 photo (normalised through a
    table), RoI pooling on two threads, the allocator setting."""
    reference = build_reference()
    path = tmp_path / "reference_maskrcnn_r50_fpn.pth"
    torch.save(reference.state_dict(), path)
    predictor = Predictor(path, device="cpu", batch_size=1)
    photo = np.asarray(Image.open(PHOTOS[1]).convert("RGB"))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = predictor.predict([photo])[0]
        with torch.no_grad():
            expected = reference([load_photo(PHOTOS[1])])[0]
    finally:
        torch.set_num_threads(previous)

    assert len(expected["boxes"]) > 5
    np.testing.assert_allclose(got.boxes, expected["boxes"].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got.labels, expected["labels"].numpy())
    expected_masks = (expected["masks"][:, 0] > 0.5).numpy()
    got_masks = np.stack([mask.to_full() for mask in got.masks])
    assert (got_masks == expected_masks).mean() >= 0.99
