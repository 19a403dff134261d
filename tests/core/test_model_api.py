"""The model's public API: MaskRCNNConfig, and MaskRCNN's forward / predict / get_loss on real and bad
input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskrcnn_core import MaskRCNN, MaskRCNNConfig, mask_rcnn_mobilenet_v2_fpn
from maskrcnn_core.model import heads
from maskrcnn_core.model.heads import lookup, lookup_cpu
from maskrcnn_core.model.mask_rcnn import LOSS_KEYS


class SimpleBackbone(nn.Module):
    """The example backbone of the model's API documentation: one stride-4 feature map of 128 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def seed_model(**overrides) -> MaskRCNN:
    torch.manual_seed(0)
    config = dict(
        backbone=SimpleBackbone(),
        feat_channels=128,
        num_classes=5,
        hidden_dim=256,
        min_size=128,
        max_size=256,
    )
    config.update(overrides)
    return MaskRCNN(MaskRCNNConfig(**config))


def square_target(h: int = 128, w: int = 160, label: int = 2) -> dict[str, torch.Tensor]:
    masks = torch.zeros(1, h, w, dtype=torch.uint8)
    masks[0, 20:90, 30:110] = 1
    return {
        "boxes": torch.tensor([[30.0, 20.0, 110.0, 90.0]]),
        "labels": torch.tensor([label]),
        "masks": masks,
    }


# ------------------------------------------------------------------------------------- config


def test_config_defaults_are_the_seeds() -> None:
    config = MaskRCNNConfig(backbone=SimpleBackbone(), feat_channels=128, num_classes=5)
    assert (config.use_fpn, config.anchor_sizes, config.aspect_ratios, config.anchor_stride) == (
        False,
        (128, 256, 512),
        (0.5, 1.0, 2.0),
        16,
    )
    assert (config.pool_size, config.hidden_dim, config.dropout) == ((7, 7), 4096, 0.5)
    assert (config.mask_pool_size, config.mask_hidden_channels, config.mask_out_size) == ((14, 14), 256, 28)
    assert config.class_names == ("class_1", "class_2", "class_3", "class_4", "class_5")
    assert config.category_ids == (1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mask_out_size": 20}, "mask_out_size"),
        ({"num_classes": 0}, "num_classes"),
        ({"feat_channels": -1}, "feat_channels"),
        ({"dropout": 1.5}, "dropout"),
        ({"pool_size": (7,)}, "pool_size"),
        ({"anchor_sizes": ()}, "anchor_sizes"),
        ({"class_names": ("a", "b")}, "class_names"),
        ({"category_ids": (1, 1, 2, 3, 4)}, "category_ids"),
        ({"backbone": "resnet"}, "backbone"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict, field: str) -> None:
    config = dict(backbone=SimpleBackbone(), feat_channels=128, num_classes=5)
    config.update(overrides)
    with pytest.raises(ValueError, match=field):
        MaskRCNNConfig(**config)


# ------------------------------------------------------------------------------------- verbs


def test_seed_example_forward_shapes() -> None:
    model = seed_model()
    cls_logits, bbox_deltas, mask_logits = model(torch.rand(1, 3, 128, 128))
    r = cls_logits.shape[0]
    assert r > 0
    assert cls_logits.shape == (r, 6)
    assert bbox_deltas.shape == (r, 24)
    assert mask_logits.shape == (r, 6, 28, 28)


def test_forward_on_given_rois_keeps_their_order_across_images() -> None:
    model = seed_model().eval()
    images = [torch.rand(3, 128, 160), torch.rand(3, 96, 128)]
    rois = torch.tensor([[0.0, 0.0, 50.0, 40.0], [10.0, 10.0, 90.0, 80.0], [5.0, 5.0, 60.0, 60.0]])
    roi_idx = torch.tensor([1, 0, 1])
    cls_logits, bbox_deltas, mask_logits = model(images, rois, roi_idx)
    assert cls_logits.shape == (3, 6) and mask_logits.shape == (3, 6, 28, 28)
    # each roi's outputs equal those of the same box asked for alone
    for i in range(3):
        alone = model([images[roi_idx[i]]], rois[i : i + 1])
        torch.testing.assert_close(cls_logits[i : i + 1], alone[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mask_logits[i : i + 1], alone[2], rtol=1e-4, atol=1e-5)


def test_predict_output_contract_and_thresholds() -> None:
    model = seed_model()
    images = [torch.rand(3, 120, 150), torch.rand(3, 90, 70)]
    results = model.predict(images, score_thresh=0.0, top_k=7)
    assert len(results) == 2
    for result, image in zip(results, images, strict=False):
        n = result["boxes"].shape[0]
        assert 0 < n <= 7
        assert result["scores"].shape == (n,) and result["labels"].shape == (n,)
        assert result["labels"].dtype == torch.int64
        assert ((result["labels"] >= 1) & (result["labels"] <= 5)).all()
        assert result["masks"].shape == (n, *image.shape[1:]) and result["masks"].dtype == torch.bool
        assert (result["scores"][:-1] >= result["scores"][1:]).all()
        h, w = image.shape[1:]
        assert (result["boxes"][:, 0::2] <= w).all() and (result["boxes"][:, 1::2] <= h).all()
    assert all(len(r["boxes"]) == 0 for r in model.predict(images, score_thresh=1.0))


def test_verbs_do_not_change_meaning_with_the_module_mode() -> None:
    model = seed_model(dropout=0.5)
    image = torch.rand(1, 3, 128, 160)
    model.train()
    in_train = model.predict(image, score_thresh=0.0)
    assert model.training, "predict restores the mode it found"
    model.eval()
    in_eval = model.predict(image, score_thresh=0.0)
    torch.testing.assert_close(in_train[0]["boxes"], in_eval[0]["boxes"])
    losses = model.get_loss(image, [square_target()])
    assert set(losses) == set(LOSS_KEYS)


def test_get_loss_dictionary_and_gradients() -> None:
    model = seed_model().train()
    losses = model.get_loss([torch.rand(3, 128, 160)], [square_target()])
    assert list(losses) == list(LOSS_KEYS)
    for key, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), key
    parts = sum(losses[k] for k in LOSS_KEYS[:-1])
    torch.testing.assert_close(losses["total_loss"], parts)
    losses["total_loss"].backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    assert model.backbone.net[0].weight.grad.abs().sum() > 0


def test_get_loss_accepts_images_without_instances() -> None:
    model = seed_model().train()
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 128, 160, dtype=torch.uint8),
    }
    losses = model.get_loss([torch.rand(3, 128, 160), torch.rand(3, 128, 160)], [empty, square_target()])
    assert torch.isfinite(losses["total_loss"])


def test_class_agnostic_mask_head() -> None:
    model = seed_model(class_agnostic_masks=True).train()
    _, _, mask_logits = model(torch.rand(1, 3, 128, 128))
    assert mask_logits.shape[1] == 1
    losses = model.get_loss([torch.rand(3, 128, 160)], [square_target(label=5)])
    assert torch.isfinite(losses["mask_loss"])
    result = model.predict(torch.rand(1, 3, 128, 128), score_thresh=0.0)[0]
    assert result["masks"].shape[0] == result["boxes"].shape[0]


def test_training_reduces_the_loss_on_one_image() -> None:
    """A sanity check of the composed losses: 30 SGD steps on one image lower every term that has data."""
    model = seed_model(dropout=0.0).train()
    image, target = torch.rand(1, 3, 128, 160), [square_target()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    first = None
    for _ in range(30):
        torch.manual_seed(1)  # the same sampled anchors and RoIs each step
        losses = model.get_loss(image, target)
        optimizer.zero_grad()
        losses["total_loss"].backward()
        optimizer.step()
        first = first or {k: float(v.detach()) for k, v in losses.items()}
    last = {k: float(v.detach()) for k, v in losses.items()}
    assert last["total_loss"] < 0.5 * first["total_loss"], (first, last)
    assert last["mask_loss"] < first["mask_loss"]


def test_fpn_variant_pools_from_pyramid_levels() -> None:
    model = mask_rcnn_mobilenet_v2_fpn(
        3,
        fpn_channels=32,
        hidden_dim=64,
        mask_hidden_channels=32,
        min_size=128,
        max_size=192,
        backbone_weights=None,
    )
    assert model.config.use_fpn and model.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2"]
    cls_logits, _, mask_logits = model(torch.rand(2, 3, 128, 128))
    assert cls_logits.shape[1] == 4 and mask_logits.shape[1:] == (4, 28, 28)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 64, 64), r"\(B, 3, H, W\)"),
        (torch.rand(1, 1, 64, 64), r"\(3, H, W\)"),
        (torch.rand(1, 4, 64, 64), r"\(3, H, W\)"),
        ([], "empty batch"),
        (torch.zeros(0, 3, 64, 64), "empty batch"),
        ([torch.rand(3, 0, 64)], "zero size"),
        ((torch.rand(1, 3, 64, 64) * 255).to(torch.uint8), "float"),
        (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
        ("image.jpg", "tensor"),
    ],
)
def test_bad_images_get_a_clear_error(images, message: str) -> None:
    model = seed_model()
    for verb in (lambda: model(images), lambda: model.predict(images)):
        with pytest.raises(ValueError, match=message):
            verb()


def test_bad_targets_get_a_clear_error() -> None:
    model = seed_model().train()
    image = [torch.rand(3, 128, 160)]
    bad_label = square_target(label=6)
    with pytest.raises(ValueError, match=r"labels must be in 1\.\.5"):
        model.get_loss(image, [bad_label])
    wrong_mask = square_target()
    wrong_mask["masks"] = wrong_mask["masks"][:, :64]
    with pytest.raises(ValueError, match="masks must be"):
        model.get_loss(image, [wrong_mask])
    degenerate = square_target()
    degenerate["boxes"] = torch.tensor([[50.0, 20.0, 40.0, 90.0]])
    with pytest.raises(ValueError, match="no area"):
        model.get_loss(image, [degenerate])
    with pytest.raises(ValueError, match="lacks"):
        model.get_loss(image, [{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(ValueError, match="1 images"):
        model.get_loss(image, [square_target(), square_target()])


def test_bad_rois_and_thresholds() -> None:
    model = seed_model()
    image = torch.rand(1, 3, 128, 128)
    with pytest.raises(ValueError, match=r"\(R, 4\)"):
        model(image, torch.rand(3, 5))
    with pytest.raises(ValueError, match="roi_idx"):
        model(torch.rand(2, 3, 128, 128), torch.rand(3, 4) * 50)
    with pytest.raises(ValueError, match="score_thresh"):
        model.predict(image, score_thresh=2.0)
    with pytest.raises(ValueError, match="top_k"):
        model.predict(image, top_k=0)


def test_uint8_images_are_normalised_exactly_as_float_ones() -> None:
    """``detect`` takes the Predictor's uint8 images: the table gives the float path's values bit for bit."""
    model = seed_model()
    generator = torch.Generator().manual_seed(0)
    hwc = torch.randint(0, 256, (97, 131, 3), dtype=torch.uint8, generator=generator)
    hwc.view(-1, 3)[:256] = torch.arange(256, dtype=torch.uint8).view(-1, 1)  # every level in every channel
    chw = hwc.permute(2, 0, 1)  # a strided view, as the Predictor passes it
    as_float = chw.float().div_(255.0)
    normalised = model.transform.normalize(chw)
    assert normalised.dtype == torch.float32
    assert torch.equal(normalised, model.transform.normalize(as_float))
    # the lookup that CUDA images take gives the same as the CPU's OpenCV lookup
    table = torch.randn(3, 256, generator=generator)
    assert torch.equal(lookup(chw, table), lookup_cpu(chw, table))
    got, expected = model.detect([chw])[0], model.detect([as_float])[0]
    for key in ("boxes", "scores", "labels", "mask_probs"):
        assert torch.equal(got[key], expected[key]), key


def test_a_channel_at_a_time_gives_the_whole_images_values_from_one_channel_buffers(monkeypatch) -> None:
    """``channel_at_a_time`` (the compiled CPU backend's preprocessing): a uint8 image is normalised and
    resized one channel after the other, so no float copy of it is larger than one full-size channel; the
    values are the whole image's to a float step. At native scale or with a target the whole path runs."""
    transform = seed_model().transform
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (300, 420, 3), dtype=torch.uint8, generator=generator).permute(2, 0, 1)
    target = {"boxes": torch.tensor([[10.0, 20.0, 200.0, 250.0]]), "labels": torch.tensor([1])}
    whole, _ = transform([image])
    whole_native = transform([image.float().div(255)])[0]

    looked_up: list[tuple[int, ...]] = []
    lookup_whole = heads.lookup_cpu

    def recording_lookup(image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        looked_up.append(tuple(image.shape))
        return lookup_whole(image, table)

    monkeypatch.setattr(heads, "lookup_cpu", recording_lookup)
    with transform.channel_at_a_time():
        by_channel, _ = transform([image])
        assert looked_up == [(1, 300, 420)] * 3
        with transform.native_scale():
            native, _ = transform([image])
        _, [resized_target] = transform([image], [dict(target)])
        assert looked_up[3:] == [(3, 300, 420)] * 2
    assert not transform._by_channel  # the block's end ends it

    assert by_channel.image_sizes == whole.image_sizes != [(300, 420)]
    torch.testing.assert_close(by_channel.tensors, whole.tensors, rtol=0, atol=1e-5)
    with transform.native_scale():
        assert torch.equal(native.tensors, transform([image.float().div(255)])[0].tensors)
    assert not torch.equal(native.tensors, whole_native.tensors)  # not resized there
    torch.testing.assert_close(resized_target["boxes"], transform.resize_target(target, (300, 420))["boxes"])
