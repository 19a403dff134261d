"""The application-facing Predictor: files and arrays in, plain Predictions with cropped masks out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn_core import CancelToken, Prediction, Predictor, mask_rcnn_mobilenet_v2_fpn, save_checkpoint
from maskrcnn_core.types import CroppedMask


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(
        class_names=("cat", "dog"),
        category_ids=(17, 18),
        backbone_weights=None,
        fpn_channels=32,
        hidden_dim=64,
        mask_hidden_channels=32,
        min_size=96,
        max_size=160,
    )
    with torch.no_grad():  # decisive: "dog" wins everywhere, masks are not all 0.5
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, -2.0, 4.0]))
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, metadata={"name": "tiny"})


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor(checkpoint, device="cpu")


def photo(seed: int, size=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
    image[20:70, 30:90] = rng.integers(150, 255, size=3, dtype=np.uint8)
    return image


def test_model_info(predictor: Predictor) -> None:
    info = predictor.model_info
    assert info.name == "tiny" and info.arch == "mobilenet_v2_fpn"
    assert [(c.id, c.name) for c in info.categories] == [(17, "cat"), (18, "dog")]
    assert predictor.device_name == "CPU"


def test_predictions_match_the_models_own_predict(predictor: Predictor) -> None:
    image = photo(1)
    prediction = predictor.predict([image], score_thresh=0.0)[0]
    assert isinstance(prediction, Prediction) and prediction.ok and len(prediction) > 0
    assert prediction.image_size == (96, 128)
    assert prediction.boxes.dtype == np.float32 and prediction.boxes.shape == (len(prediction), 4)
    assert set(prediction.labels.tolist()) <= {1, 2}
    assert (prediction.category_ids == np.where(prediction.labels == 1, 17, 18)).all()
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = predictor.model.predict([tensor], score_thresh=0.0)[0]
    np.testing.assert_allclose(prediction.boxes, expected["boxes"].numpy(), rtol=1e-5, atol=1e-4)
    for mask, full in zip(prediction.masks, expected["masks"].numpy(), strict=False):
        assert isinstance(mask, CroppedMask)
        assert mask.mask.size <= full.size  # cropped, not full-image
        assert (mask.to_full() == full).all()


def test_files_and_arrays_of_every_kind(predictor: Predictor, tmp_path: Path) -> None:
    rgb = photo(2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.png")
    # EXIF orientation 6: stored landscape, shown portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    sources = [
        tmp_path / "rgb.png",
        tmp_path / "gray.png",
        tmp_path / "rgba.png",
        tmp_path / "rotated.jpg",
        rgb[..., 0],
        (rgb.astype(np.uint16) * 257),
        rgb.astype(np.float32) / 255,
    ]
    predictions = predictor.predict(sources, score_thresh=0.0)
    assert [p.ok for p in predictions] == [True] * len(sources), [p.error for p in predictions]
    assert predictions[3].image_size == (128, 96)
    assert predictions[0].source == str(tmp_path / "rgb.png") and predictions[4].source is None
    np.testing.assert_allclose(predictions[6].boxes, predictions[0].boxes, atol=1e-3)  # float in [0, 1]


def test_a_bad_file_fails_alone(predictor: Predictor, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(photo(3)).save(good)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    sources = [good, tmp_path / "empty.jpg", tmp_path / "missing.png", tmp_path / "text.png", good]
    predictions = predictor.predict(sources, score_thresh=0.0)
    assert [p.ok for p in predictions] == [True, False, False, False, True]
    for bad in predictions[1:4]:
        assert bad.error and bad.source and len(bad) == 0
    assert "empty.jpg" in predictions[1].error and "missing.png" in predictions[2].error


def test_progress_and_cancel(checkpoint: Path) -> None:
    predictor = Predictor(checkpoint, device="cpu", batch_size=1)
    images = [photo(i) for i in range(4)]
    calls = []
    token = CancelToken()

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            token.cancel()

    predictions = predictor.predict(images, progress=progress, cancel=token)
    assert calls == [(1, 4), (2, 4)]
    assert len(predictions) == 2


def test_box_prompt(predictor: Predictor) -> None:
    image = photo(4)
    boxes = np.array([[30.0, 20.0, 90.0, 70.0], [0.0, 0.0, 20.0, 30.0]], dtype=np.float32)
    prompted = predictor.segment_boxes(image, boxes)
    assert len(prompted) == 2 and prompted.ok
    np.testing.assert_array_equal(prompted.boxes, boxes)
    for mask, (x0, y0, x1, y1) in zip(prompted.masks, boxes, strict=False):
        cx0, cy0, cx1, cy1 = mask.crop_box
        # the mask lies within the box, grown by torchvision's one-cell padding of the 28x28 mask
        assert cx0 >= x0 - (x1 - x0) / 14 - 1 and cx1 <= x1 + (x1 - x0) / 14 + 1
        assert cy0 >= y0 - (y1 - y0) / 14 - 1 and cy1 <= y1 + (y1 - y0) / 14 + 1
    fixed = predictor.segment_boxes(image, boxes, labels=np.array([1, 1]))
    assert fixed.labels.tolist() == [1, 1] and fixed.category_ids.tolist() == [17, 17]
    with pytest.raises(ValueError, match="x1 < x2"):
        predictor.segment_boxes(image, np.array([[10.0, 10.0, 5.0, 20.0]]))
    with pytest.raises(ValueError, match=r"labels must be in 1\.\.2"):
        predictor.segment_boxes(image, boxes, labels=np.array([0, 3]))


def test_score_threshold_refilters_without_rerunning(predictor: Predictor) -> None:
    prediction = predictor.predict([photo(5)], score_thresh=0.0)[0]
    threshold = float(np.median(prediction.scores))
    kept = prediction.filter(threshold)
    assert 0 < len(kept) < len(prediction)
    assert (kept.scores >= threshold).all() and len(kept.masks) == len(kept)
    direct = predictor.predict([photo(5)], score_thresh=threshold)[0]
    np.testing.assert_allclose(kept.boxes, direct.boxes)


def test_bad_arrays_and_arguments(predictor: Predictor, checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="sequence"):
        predictor.predict(photo(0))
    for bad in (
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        np.zeros((2, 3, 4, 5)),
        np.full((8, 8, 3), np.nan, np.float32),
    ):
        with pytest.raises(ValueError):
            predictor.predict([bad])
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(checkpoint, batch_size=0)
    assert predictor.predict([]) == []


def test_out_of_gpu_memory_retries_image_by_image_then_reports_the_image(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA out-of-memory path, on the CPU: a batch that does not fit is retried one image at a time,
    and an image that does not fit alone gets an error result while the others are segmented."""
    predictor = Predictor(checkpoint, device="cpu", batch_size=2)
    detect = predictor.model.detect
    attempts: list[int] = []

    def detect_within_memory(images, **kwargs):
        attempts.append(len(images))
        if len(images) > 1 or images[0].shape[-1] > 200:  # a pair, or the wide image, "does not fit"
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return detect(images, **kwargs)

    monkeypatch.setattr(predictor.model, "detect", detect_within_memory)
    wide = photo(2, size=(96, 256))
    predictions = predictor.predict([photo(1), photo(3), wide], score_thresh=0.0)

    assert attempts == [2, 1, 1, 1]
    assert [p.ok for p in predictions] == [True, True, False]
    assert "out of GPU memory on a 256x96 image" in predictions[2].error
    assert len(predictions[0]) > 0 and len(predictions[1]) > 0


def test_a_batch_runs_one_forward_per_image_size(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model pads a batch to its largest height and width: a portrait image beside a landscape one
    would be computed as a square each, so images of another size go in a forward of their own."""
    predictor = Predictor(checkpoint, device="cpu", batch_size=4)
    detect = predictor.model.detect
    sizes: list[list[tuple[int, int]]] = []

    def recording_detect(images, **kwargs):
        sizes.append([tuple(image.shape[-2:]) for image in images])
        return detect(images, **kwargs)

    monkeypatch.setattr(predictor.model, "detect", recording_detect)
    landscape, portrait = (96, 128), (128, 96)
    images = [photo(1, landscape), photo(2, portrait), photo(3, landscape), photo(4, portrait)]
    predictions = predictor.predict(images, score_thresh=0.0)
    assert sizes == [[landscape, landscape], [portrait, portrait]]
    alone = [Predictor(checkpoint, device="cpu", batch_size=1).predict([image])[0] for image in images]
    for batched, single in zip(predictions, alone, strict=True):  # in the input's order
        np.testing.assert_allclose(batched.scores, single.scores, rtol=1e-4, atol=1e-5)
