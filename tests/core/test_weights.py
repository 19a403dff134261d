"""Checkpoints: our format round-trips, other class sets keep what they can, bad files are refused clearly."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from weights_server import closed_port

from app.resources import DEMO_MODEL
from maskrcnn_core import (
    build_model,
    load_model,
    mask_rcnn_mobilenet_v2_fpn,
    mask_rcnn_resnet_18_fpn,
    mask_rcnn_resnet_34_fpn,
    mask_rcnn_resnet_50_fpn_v2,
    mask_rcnn_resnet_101_fpn,
    save_checkpoint,
)
from maskrcnn_core.model.weights import CheckpointError, hub_checkpoint_path, model_info, read_checkpoint
from maskrcnn_core.types import ClassMap

SMALL = dict(fpn_channels=32, hidden_dim=64, mask_hidden_channels=32, min_size=96, max_size=128)


def small_model(names=("cat", "dog", "bird"), ids=(11, 22, 33), **kwargs):
    torch.manual_seed(0)
    return mask_rcnn_mobilenet_v2_fpn(
        class_names=names, category_ids=ids, backbone_weights=None, **{**SMALL, **kwargs}
    )


def test_our_checkpoint_round_trips_exactly(tmp_path: Path) -> None:
    model = small_model()
    path = save_checkpoint(tmp_path / "m.pt", model, metadata={"name": "shapes-v1", "mask_ap": 0.5})
    loaded = load_model(path)
    assert loaded.config.class_names == ("cat", "dog", "bird")
    assert loaded.config.category_ids == (11, 22, 33)
    assert loaded.config.arch == model.config.arch
    assert loaded.checkpoint_metadata["mask_ap"] == 0.5
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # built on the meta device and filled from the file: nothing left on meta, same trainable parameters
    tensors = [*loaded.parameters(), *loaded.buffers(), *loaded.rpn.anchor_generator.cell_anchors]
    assert not any(t.is_meta for t in tensors)
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    image = torch.rand(1, 3, 96, 120)
    expected = model.eval().predict(image, score_thresh=0.0)[0]
    got = loaded.predict(image, score_thresh=0.0)[0]
    torch.testing.assert_close(got["boxes"], expected["boxes"])


def test_half_precision_checkpoint_is_smaller_and_loads(tmp_path: Path) -> None:
    model = small_model()
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    weight = model.state_dict()["roi_heads.box_head.fc6.weight"]
    torch.testing.assert_close(
        loaded.state_dict()["roi_heads.box_head.fc6.weight"], weight, rtol=1e-3, atol=1e-3
    )


def test_new_class_set_keeps_backbone_rpn_and_shared_classes(tmp_path: Path) -> None:
    base = small_model()
    path = save_checkpoint(tmp_path / "base.pt", base)
    # "dog" is kept (moved to label 1), "cat"/"bird" dropped, "fox" new
    with pytest.warns(UserWarning, match="start untrained: fox; its classes left out: cat, bird"):
        tuned = mask_rcnn_mobilenet_v2_fpn(
            class_names=("dog", "fox"), category_ids=(5, 6), weights=path, **SMALL
        )
    assert tuned.config.num_classes == 2
    base_state, tuned_state = base.state_dict(), tuned.state_dict()
    for key in base_state:
        if key.startswith(("backbone.", "rpn.", "roi_heads.box_head.", "roi_heads.mask_head.")):
            assert torch.equal(base_state[key], tuned_state[key]), key
    cls = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(tuned_state[cls][0], base_state[cls][0])  # background
    assert torch.equal(tuned_state[cls][1], base_state[cls][2])  # dog: label 2 -> 1
    assert not torch.equal(tuned_state[cls][2], base_state[cls][1])  # fox: fresh
    bbox = "roi_heads.box_predictor.bbox_pred.weight"
    assert torch.equal(tuned_state[bbox][4:8], base_state[bbox][8:12])
    logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    assert torch.equal(tuned_state[logits][1], base_state[logits][2])


def _coco_count_state_dict(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """A torchvision-format state dict (tensors only) with COCO's 90 classes, on a small ResNet-18-FPN."""
    torch.manual_seed(0)
    model = mask_rcnn_resnet_18_fpn(num_classes=90, norm="frozen", **SMALL)  # torchvision's layout
    state = model.state_dict()
    path = tmp_path / "maskrcnn_r18_90_classes.pth"
    torch.save(state, path)
    return state, path


def test_num_classes_equal_to_the_state_dicts_keeps_every_class_row(tmp_path: Path) -> None:
    state, path = _coco_count_state_dict(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # keeping every class is no cause for a warning
        given = mask_rcnn_resnet_18_fpn(num_classes=90, weights=path, **SMALL)
        left_out = mask_rcnn_resnet_18_fpn(weights=path, **SMALL)
    assert given.class_map == left_out.class_map
    assert given.class_map.label_to_name(1) == "person" and given.class_map.category_id_to_label(90) == 90
    for key, value in state.items():
        assert torch.equal(given.state_dict()[key], value), key


def test_another_class_count_warns_which_classes_start_untrained(tmp_path: Path) -> None:
    state, path = _coco_count_state_dict(tmp_path)
    with pytest.warns(UserWarning) as caught:
        model = mask_rcnn_resnet_18_fpn(num_classes=2, weights=path, **SMALL)
    message = str(caught[0].message)
    assert "classes that start untrained: class_1, class_2;" in message
    assert "its classes left out: person, bicycle, car" in message and "and 82 more" in message
    assert str(path) in message
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert model.class_map.names == ("class_1", "class_2")
    cls = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(model.state_dict()[cls][0], state[cls][0])  # background is kept
    fpn = "backbone.fpn.inner_blocks.0.0.weight"
    assert torch.equal(model.state_dict()[fpn], state[fpn])


def test_other_class_names_keep_the_shared_rows_and_warn_about_the_rest(tmp_path: Path) -> None:
    state, path = _coco_count_state_dict(tmp_path)
    with pytest.warns(UserWarning, match="start untrained: zebra crossing; its classes left out: bicycle"):
        model = mask_rcnn_resnet_18_fpn(
            class_names=("kite", "person", "zebra crossing"), category_ids=(1, 2, 3), weights=path, **SMALL
        )
    cls = "roi_heads.box_predictor.cls_score.weight"
    coco = model.class_map  # the model's own labels
    assert coco.name_to_label("kite") == 1
    assert torch.equal(model.state_dict()[cls][1], state[cls][38])  # kite: COCO label 38
    assert torch.equal(model.state_dict()[cls][2], state[cls][1])  # person: COCO label 1


def test_class_arguments_that_contradict_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_classes is 3 but 2 classes were given"):
        mask_rcnn_mobilenet_v2_fpn(3, class_names=("a", "b"), backbone_weights=None, **SMALL)
    with pytest.raises(ValueError, match="class names must be unique"):
        mask_rcnn_mobilenet_v2_fpn(class_names=("a", "a"), backbone_weights=None, **SMALL)
    with pytest.raises(ValueError, match="not both"):
        mask_rcnn_mobilenet_v2_fpn(
            class_map=ClassMap.numbered(2), class_names=("a", "b"), backbone_weights=None, **SMALL
        )


def test_old_checkpoint_with_repeated_names_loads_with_told_apart_names(tmp_path: Path) -> None:
    """Checkpoints written before names had to be unique kept torchvision's repeated "N/A"."""
    path = save_checkpoint(tmp_path / "m.pt", small_model(names=("cat", "dog", "bird"), ids=(1, 12, 26)))
    raw = torch.load(path, weights_only=True)
    raw["class_names"] = ["cat", "N/A", "N/A"]
    torch.save(raw, path)
    model = load_model(path)
    assert model.class_map.names == ("cat", "N/A (id 12)", "N/A (id 26)")
    assert model.class_map.category_ids == (1, 12, 26)


def test_demo_checkpoint_loads_with_its_class_map_and_metadata() -> None:
    model = load_model(DEMO_MODEL)
    assert model.class_map == ClassMap.from_lists(("circle", "square", "triangle", "ring"), (1, 2, 3, 4))
    assert model.checkpoint_metadata["name"] == "demo-shapes"
    info = model_info(model, DEMO_MODEL)
    assert info.class_map == model.class_map and info.name == "demo-shapes"


def test_checkpoint_for_another_architecture_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "mobilenet.pt", small_model())
    with pytest.raises(
        CheckpointError, match="mobilenet_v2_fpn model; it cannot be loaded into a resnet18_fpn"
    ):
        mask_rcnn_resnet_18_fpn(weights=path)
    # same architecture name, different widths: the shapes do not fit
    with pytest.raises(CheckpointError, match="does not fit"):
        mask_rcnn_mobilenet_v2_fpn(
            weights=path, fpn_channels=64, hidden_dim=64, mask_hidden_channels=32, backbone_weights=None
        )


def test_torchvision_state_dict_of_another_layout_is_refused(tmp_path: Path) -> None:
    state = small_model().state_dict()
    state.pop("backbone.fpn.layer_blocks.0.0.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="cannot tell which architecture|does not fit"):
        load_model(tmp_path / "broken.pth")


def test_checkpoint_carrying_code_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "maskrcnn-studio-checkpoint", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_checkpoint_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        read_checkpoint(path)


def test_missing_checkpoint_and_non_model_dict(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"format": "maskrcnn-studio-checkpoint", "format_version": 1}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="missing 'arch'"):
        read_checkpoint(tmp_path / "partial.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="neither"):
        read_checkpoint(tmp_path / "other.pt")


def test_coco_alias_offline_names_the_file_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("MASKRCNN_WEIGHTS_URL", f"http://127.0.0.1:{closed_port()}/models/")
    with pytest.raises(FileNotFoundError) as info:
        read_checkpoint("coco")
    message = str(info.value)
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert hub_checkpoint_path("coco-v2").name == "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"


def test_coco_alias_loads_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A v2 COCO-layout file in the hub cache is found by name and loads with its 90 COCO classes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    reference = mask_rcnn_resnet_50_fpn_v2(min_size=64, max_size=96)
    path = hub_checkpoint_path("coco-v2")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = mask_rcnn_resnet_50_fpn_v2(weights="coco-v2")
    assert model.config.num_classes == 90 and model.config.class_names[17] == "dog"
    key = "roi_heads.box_head.0.0.weight"
    assert torch.equal(model.state_dict()[key], reference.state_dict()[key])


def test_all_variants_build_and_rebuild_from_their_arch() -> None:
    for factory in (mask_rcnn_resnet_18_fpn, mask_rcnn_resnet_34_fpn, mask_rcnn_resnet_101_fpn):
        model = factory(num_classes=2, min_size=64, max_size=96)
        rebuilt = build_model(model.config.arch, class_names=model.config.class_names)
        assert rebuilt.state_dict().keys() == model.state_dict().keys()
        assert type(rebuilt.backbone.body.layer1[0]) is type(model.backbone.body.layer1[0])


def test_mobilenet_backbone_starts_from_imagenet_weights() -> None:
    """The offline copy of torchvision's ImageNet MobileNetV2 weights is what the backbone starts from."""
    from maskrcnn_core.model.backbones import find_mobilenet_v2_imagenet

    reference = torch.load(find_mobilenet_v2_imagenet(), weights_only=True)
    model = mask_rcnn_mobilenet_v2_fpn(2, **SMALL)
    state = model.state_dict()
    key = "features.4.conv.0.0.weight"
    assert torch.equal(state["backbone.body.4.conv.0.0.weight"], reference[key])
    # FrozenBatchNorm: the ImageNet statistics stay as they are
    assert torch.equal(
        state["backbone.body.4.conv.0.1.running_var"], reference["features.4.conv.0.1.running_var"]
    )
    # the freeze policy: by default the last 3 stages train, the stem does not
    trainable = {
        n.split(".")[2]
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("backbone.body")
    }
    assert "0" not in trainable and "14" in trainable
