"""The CPU execution backend: OpenVINO runs the dense sub-networks, with torchvision's detections.

The fp32 reference is torchvision's own Mask R-CNN (seeded, calibrated COCO-layout weights, see
``reference_model.py``) on real photographs; detections are matched box to box, since near-tied scores may
come out in another order. Then the cache (a second start converts nothing, a damaged entry is rebuilt,
an unwritable folder is skipped), a network that does not convert (runs on torch, says why in one line),
the rule that picks backend and precision, and bfloat16's accuracy on the bundled demo model.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from memory_probe import resident_bytes
from PIL import Image
from reference_model import PHOTOS, load_photo, save_reference
from tiny_model import TINY

from app.resources import DEMO_MODEL
from maskrcnn_core import Predictor, mask_rcnn_mobilenet_v2_fpn, save_checkpoint
from maskrcnn_core.inference_options import choose_backend
from maskrcnn_core.model import heads
from maskrcnn_core.model.subnetworks import TorchSubNetworks
from maskrcnn_core.model.weights import CheckpointError, load_weights_into, read_checkpoint

pytest.importorskip("openvino")

from maskrcnn_core.engine import openvino_backend  # noqa: E402  (needs openvino)
from maskrcnn_core.engine.openvino_backend import OpenVinoSubNetworks  # noqa: E402


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    # a smaller input than COCO's 800 keeps the test fast on 2 CPU cores; both pipelines get the same
    return save_reference(tmp_path_factory.mktemp("weights"), min_size=480, max_size=800)


@pytest.fixture(scope="module")
def openvino_predictor(reference_file, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    _, path = reference_file
    # torchvision's default input size is in the file name's model; ours reads it from the checkpoint's
    # state (min_size / max_size are not in a plain state dict), so give the reference's
    from maskrcnn_core import mask_rcnn_resnet_50_fpn

    model = mask_rcnn_resnet_50_fpn(weights=path, min_size=480, max_size=800)
    ours = save_checkpoint(tmp_path_factory.mktemp("ours") / "r50.pt", model)
    cache = tmp_path_factory.mktemp("ov-cache")
    return Predictor(ours, device="cpu", batch_size=1, backend="openvino", precision="fp32", cache_dir=cache)


def match_detections(got, expected: dict) -> list[tuple[int, int]]:
    """Pairs (ours, torchvision's) of the same label and box; each detection used once, best score first."""
    pairs, used = [], set()
    boxes = expected["boxes"].numpy()
    labels = expected["labels"].numpy()
    for i in np.argsort(-got.scores):
        close = np.abs(boxes - got.boxes[i]).max(axis=1) < 1e-2
        candidates = [j for j in np.flatnonzero(close & (labels == got.labels[i])) if j not in used]
        if candidates:
            j = min(candidates, key=lambda j: abs(float(expected["scores"][j]) - float(got.scores[i])))
            used.add(j)
            pairs.append((int(i), int(j)))
    return pairs


@pytest.mark.parametrize("photo", PHOTOS, ids=[p.stem for p in PHOTOS])
def test_fp32_gives_torchvisions_detections(
    reference_file, openvino_predictor: Predictor, photo: Path
) -> None:
    reference, _ = reference_file
    assert openvino_predictor.backend.label == "OpenVINO fp32"
    with torch.no_grad():
        expected = reference([load_photo(photo)])[0]
    got = openvino_predictor.predict([np.asarray(Image.open(photo).convert("RGB"))])[0]
    assert len(expected["boxes"]) > 5, (
        "the reference must detect something for the comparison to mean anything"
    )

    pairs = match_detections(got, expected)
    # every detection has its twin, except at the top-100 cut where near-tied scores may swap places
    cut = float(expected["scores"][-1]) if len(expected["scores"]) == 100 else -1.0
    unmatched = [float(s) for j, s in enumerate(expected["scores"]) if j not in {e for _, e in pairs}]
    assert all(abs(s - cut) < 1e-4 for s in unmatched), f"unmatched torchvision detections: {unmatched}"
    ours, theirs = (np.array(side) for side in zip(*pairs, strict=True))
    np.testing.assert_allclose(got.boxes[ours], expected["boxes"].numpy()[theirs], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got.scores[ours], expected["scores"].numpy()[theirs], rtol=1e-4, atol=1e-4)

    expected_masks = (expected["masks"][:, 0] > 0.5).numpy()[theirs]
    got_masks = np.stack([got.masks[i].to_full() for i in ours])
    agreement = (got_masks == expected_masks).mean()
    assert agreement >= 0.99, f"masks agree on only {agreement:.4%} of pixels"
    assert expected_masks.reshape(len(expected_masks), -1).any(axis=1).mean() > 0.5  # not empty masks


def test_the_box_prompt_runs_on_the_backend_too(openvino_predictor: Predictor) -> None:
    image = np.asarray(Image.open(PHOTOS[2]).convert("RGB"))
    detected = openvino_predictor.predict([image])[0]
    prompted = openvino_predictor.segment_boxes(image, detected.boxes[:5], detected.labels[:5])
    for a, b in zip(prompted.masks, detected.masks[:5], strict=True):
        assert (a.to_full() == b.to_full()).mean() > 0.999


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(class_names=("cat", "dog"), **TINY)
    with torch.no_grad():  # decisive scores and masks, so that detections can be compared
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, -2.0, 4.0]))
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", model)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def _portrait() -> np.ndarray:
    """An image the model pads to another shape than :func:`_image`'s: its input size is fixed (min_size,
    max_size), so another orientation is another padded shape."""
    return np.random.default_rng(1).integers(0, 255, (224, 160, 3), dtype=np.uint8)


def _same(a, b) -> None:
    assert len(a.scores) == len(b.scores) > 0
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3)


def test_a_second_start_reads_the_cache_and_converts_nothing(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    entries = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert entries == ["backbone_rpn", "box_head", "mask_head"]

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the networks")

    monkeypatch.setattr(openvino_backend, "_convert", no_conversion)
    second = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    assert second.backend.label == "OpenVINO fp32"
    _same(second.predict([_image()])[0], first.predict([_image()])[0])


def test_the_backbone_is_compiled_for_each_new_input_shape_and_kept_while_it_repeats(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    # one input shape compiled at a time: the same shape again runs the same network, a new one replaces it,
    # and every shape, the first, another and the first again, gives torch's detections
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    on_torch = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    networks = ov._subnetworks
    assert isinstance(networks, OpenVinoSubNetworks)
    compiled = []
    for image in (_image(), _image(2), _portrait(), _image()):
        _same(ov.predict([image])[0], on_torch.predict([image])[0])
        compiled.append((networks._backbone, networks._backbone_shape))
    (first, first_shape), (again, _), (turned, turned_shape), (back, back_shape) = compiled
    assert again is first  # the same shape: nothing compiled
    assert turned_shape != first_shape and turned is not first
    assert back_shape == first_shape and back is not turned


def test_the_backends_images_are_normalised_a_channel_at_a_time_and_torchs_whole(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the backend's full-size float copy is one channel, a third of torch's, for the same detections; torch's
    # backend keeps torchvision's whole-image arithmetic, bit for bit
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    on_torch = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    looked_up: list[int] = []
    lookup = heads.lookup_cpu

    def recording_lookup(image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        looked_up.append(len(image))
        return lookup(image, table)

    monkeypatch.setattr(heads, "lookup_cpu", recording_lookup)
    image = _portrait()  # resized: the model's input size is not the image's
    from_backend = ov.predict([image])[0]
    assert looked_up == [1, 1, 1]
    looked_up.clear()
    _same(from_backend, on_torch.predict([image])[0])
    assert looked_up == [3]


def test_the_heads_let_go_of_their_input_once_done(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # a request holds the input it ran until the next: the box head's pooled features of 1,000 RoIs would stay
    # from one image to the next. The heads' outputs are still torch's.
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    on_torch = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    networks = ov._subnetworks
    assert isinstance(networks, OpenVinoSubNetworks)
    in_torch = TorchSubNetworks(on_torch.model)
    config = on_torch.model.config
    for run, expected, shape in (
        (networks.box_outputs, in_torch.box_outputs, (40, config.feat_channels, *config.pool_size)),
        (networks.mask_logits, in_torch.mask_logits, (30, config.feat_channels, *config.mask_pool_size)),
    ):
        memory = np.random.default_rng(0).random(shape, dtype=np.float32)
        held = weakref.ref(memory)  # alive while anything holds the tensor's storage
        pooled = torch.from_numpy(memory)
        del memory
        got = run(pooled)
        with torch.no_grad():
            want = expected(pooled)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        del pooled
        gc.collect()
        assert held() is None, f"{run.__name__} still holds its input"
    _same(ov.predict([_image()])[0], on_torch.predict([_image()])[0])  # and the next image runs as before


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc")
def test_the_weights_files_pages_are_given_back_and_the_networks_still_give_torchs_detections(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    # OpenVINO maps the cached weights files and computes from its own copy laid out for its kernels: the
    # mapped pages are given back once that copy exists, and read from the file again where needed
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    weights_files = sorted(tmp_path.glob("*/model.bin"))
    assert len(weights_files) == 3
    assert all(resident_bytes(path) == 0 for path in weights_files)
    on_torch = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    networks = ov._subnetworks
    assert isinstance(networks, OpenVinoSubNetworks)
    for image in (_image(), _image(1), _portrait()):
        _same(ov.predict([image])[0], on_torch.predict([image])[0])
        # a new input shape compiles the backbone again, reading its file: those pages go after it runs
        assert resident_bytes(weights_files[0]) == 0
        # the heads, run at a new number of RoIs, may read theirs: they go when the next image starts
        networks.features_and_objectness(torch.zeros(1, 3, 64, 96))
        assert all(resident_bytes(path) == 0 for path in weights_files)


def _weights_dropped(predictor: Predictor) -> bool:
    modules = openvino_backend.compiled_modules(predictor._model)
    return all(p.is_meta for module in modules for p in module.parameters())


def test_torchs_weights_are_dropped_and_read_back_when_the_model_is_wanted(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    on_torch = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    assert _weights_dropped(ov)
    _same(ov.predict([_image()])[0], on_torch.predict([_image()])[0])
    assert _weights_dropped(ov)  # detecting does not need them

    model = ov.model  # read back from the checkpoint
    assert not _weights_dropped(ov)
    loaded = on_torch.model.state_dict()
    for name, restored in model.state_dict().items():
        assert torch.equal(restored, loaded[name]), name
    _same(Predictor.from_model(model).predict([_image()])[0], on_torch.predict([_image()])[0])
    _same(ov.predict([_image()])[0], on_torch.predict([_image()])[0])


def test_no_rois_give_the_shapes_torch_gives_without_torchs_weights(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    ov = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    networks = ov._subnetworks
    assert isinstance(networks, OpenVinoSubNetworks) and _weights_dropped(ov)
    config = ov._model.config
    box_pooled = torch.zeros(0, config.feat_channels, *config.pool_size)
    mask_pooled = torch.zeros(0, config.feat_channels, *config.mask_pool_size)
    got = (*networks.box_outputs(box_pooled), networks.mask_logits(mask_pooled))
    torch_networks = TorchSubNetworks(Predictor(tiny_checkpoint, device="cpu", backend="torch").model)
    with torch.no_grad():
        expected = (*torch_networks.box_outputs(box_pooled), torch_networks.mask_logits(mask_pooled))
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert all(t.device.type == "cpu" for t in got)


def test_a_checkpoint_changed_on_disk_is_not_read_back_and_the_predictor_keeps_working(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model.pt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    ov = Predictor(copy, device="cpu", backend="openvino", cache_dir=tmp_path / "cache")
    expected = ov.predict([_image()])[0]
    torch.manual_seed(7)  # the same architecture and classes, other weights
    save_checkpoint(copy, mask_rcnn_mobilenet_v2_fpn(class_names=("cat", "dog"), **TINY))

    with pytest.raises(CheckpointError, match="no longer holds the weights"):
        _ = ov.model
    assert _weights_dropped(ov)
    _same(ov.predict([_image()])[0], expected)
    copy.write_bytes(tiny_checkpoint.read_bytes())  # the file back as it was: now it can be read back
    assert not any(p.is_meta for p in ov.model.parameters())


def test_another_model_gets_its_own_cache_entries_for_the_networks_whose_weights_differ(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    def entries() -> dict[str, int]:
        kinds = [p.name.split("-")[0] for p in tmp_path.iterdir() if not p.name.startswith(".")]
        return {kind: kinds.count(kind) for kind in sorted(set(kinds))}

    Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    assert entries() == {"backbone_rpn": 1, "box_head": 1, "mask_head": 1}
    other = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    with torch.no_grad():  # other weights in the mask predictor alone: the other two are read back
        next(other.model.roi_heads.mask_predictor.parameters()).add_(0.1)
    networks = OpenVinoSubNetworks(other.model, cache_dir=tmp_path)
    assert entries() == {"backbone_rpn": 1, "box_head": 1, "mask_head": 2}
    pooled = torch.rand(3, other.model.config.feat_channels, *other.model.config.mask_pool_size)
    with torch.no_grad():
        expected = TorchSubNetworks(other.model).mask_logits(pooled)
    torch.testing.assert_close(networks.mask_logits(pooled), expected, rtol=1e-4, atol=1e-4)
    # other classes: the heads' last layers change shape, the backbone and RPN head are the checkpoint's
    new_classes = mask_rcnn_mobilenet_v2_fpn(class_names=("cat", "dog", "bird"), **TINY)
    load_weights_into(new_classes, read_checkpoint(tiny_checkpoint))
    OpenVinoSubNetworks(new_classes, cache_dir=tmp_path)
    assert entries() == {"backbone_rpn": 1, "box_head": 2, "mask_head": 3}
    with torch.no_grad():  # other weights in the backbone: a new entry for its network
        next(other.model.backbone.parameters()).add_(0.1)
    OpenVinoSubNetworks(other.model, cache_dir=tmp_path)
    assert entries() == {"backbone_rpn": 2, "box_head": 2, "mask_head": 3}


@pytest.mark.parametrize("damage", ["flipped bytes in the weights", "a truncated weights file", "no network"])
def test_a_damaged_cache_entry_is_rebuilt(
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    expected = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path).predict(
        [_image()]
    )[0]
    entry = next(tmp_path.glob("backbone_rpn-*"))
    weights = entry / "model.bin"
    data = bytearray(weights.read_bytes())
    if damage == "flipped bytes in the weights":
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        weights.write_bytes(bytes(data))
    elif damage == "a truncated weights file":
        weights.write_bytes(bytes(data[: len(data) // 3]))
    else:
        (entry / "model.xml").unlink()
    with caplog.at_level(logging.WARNING):
        again = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    assert again.backend.label == "OpenVINO fp32"
    assert any("rebuilding a damaged OpenVINO cache entry" in r.getMessage() for r in caplog.records)
    _same(again.predict([_image()])[0], expected)
    assert (entry / "model.bin").stat().st_size == len(data) or damage != "a truncated weights file"


def test_a_cache_folder_that_cannot_be_written_is_skipped_with_a_warning(
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=blocker / "cache")
    assert predictor.backend.label == "OpenVINO fp32"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not caching converted models: cannot write" in warnings[0]
    reference = Predictor(tiny_checkpoint, device="cpu", backend="torch")
    _same(predictor.predict([_image()])[0], reference.predict([_image()])[0])


class _HistogramBackbone(torch.nn.Module):
    """A custom backbone from the Python API with an operation OpenVINO has no conversion for."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.out_channels = inner.out_channels

    def forward(self, x: torch.Tensor):
        features = self.inner(x)
        first = next(iter(features))
        features[first] = features[first] + 0 * torch.histc(x, bins=4).sum()
        return features


def test_a_network_that_does_not_convert_runs_on_torch_and_says_why(
    tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = Predictor(tiny_checkpoint, device="cpu", backend="torch").model
    model.backbone = _HistogramBackbone(model.backbone)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_model(model, backend="openvino", cache_dir=tmp_path)
    assert predictor.backend.backend == "torch"
    assert "aten::histc" in predictor.backend.reason and "running on torch" in predictor.backend.reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [predictor.backend.reason] and "\n" not in warnings[0]
    assert logging.getLogger().level == logging.WARNING  # the converter's failure left logging alone
    result = predictor.predict([_image()])[0]
    with torch.no_grad():
        direct = model.detect([torch.from_numpy(_image()).permute(2, 0, 1).float() / 255])[0]
    np.testing.assert_allclose(result.scores, direct["scores"].numpy(), rtol=1e-5)


def test_the_rule_that_picks_backend_and_precision() -> None:
    cpu = dict(openvino_available=True, native_bf16=False)
    assert choose_backend(**cpu).label == "OpenVINO fp32"
    assert choose_backend("torch", **cpu).label == "torch fp32"
    # reduced precision only where the CPU has it natively, and only when the user allowed it
    amx = dict(openvino_available=True, native_bf16=True)
    assert choose_backend(**amx).label == "OpenVINO fp32"
    assert choose_backend(allow_reduced_precision=True, **amx).label == "OpenVINO bf16"
    assert choose_backend(precision="bf16", **amx).label == "OpenVINO bf16"
    slow = choose_backend(precision="bf16", **cpu)
    assert slow.label == "OpenVINO fp32" and "no native bfloat16" in slow.reason
    assert choose_backend(allow_reduced_precision=True, **cpu).reason == ""  # auto: nothing to explain
    missing = choose_backend("openvino", openvino_available=False, native_bf16=True)
    assert missing.label == "torch fp32" and "not installed" in missing.reason
    assert choose_backend(openvino_available=False).label == "torch fp32"
    gpu = choose_backend("openvino", on_gpu=True)
    assert gpu.backend == "torch" and "GPU" in gpu.reason
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend("onnx")
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_backend(precision="int8")


def test_the_engine_runs_without_openvino(tiny_checkpoint: Path) -> None:
    code = (
        "import sys, logging; sys.modules['openvino'] = None; logging.basicConfig(format='%(message)s')\n"
        "import numpy as np\n"
        "from maskrcnn_core import Predictor\n"
        f"p = Predictor({str(tiny_checkpoint)!r}, device='cpu', backend='openvino')\n"
        "r = p.predict([np.zeros((64, 64, 3), np.uint8)])[0]\n"
        "print(p.backend.label, r.ok)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "torch fp32 True"
    assert "OpenVINO is not installed" in done.stderr


@pytest.mark.skipif(not DEMO_MODEL.is_file(), reason="app/resources/models/demo.pt is not built yet")
def test_bf16_keeps_the_demo_models_mask_ap_within_0_01_of_fp32(tmp_path: Path) -> None:
    """OpenVINO's bfloat16 against its float32, mask AP (pycocotools) on held-out synthetic images.

    On a CPU without native bfloat16 the Predictor would run float32 (see inference_options); OpenVINO
    still computes in bfloat16 when told to, emulated, so the numbers are what an AMX machine gets."""
    from maskrcnn_core.data.coco import load_coco
    from maskrcnn_core.data.synthetic import generate_synthetic_dataset
    from maskrcnn_core.engine.validation import evaluate_model

    gt = generate_synthetic_dataset(tmp_path / "val", num_images=24, seed=2, split_name="val")
    data, _ = load_coco(gt, tmp_path / "val" / "images")
    scores = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(DEMO_MODEL, device="cpu", backend="torch")
        predictor._subnetworks = OpenVinoSubNetworks(predictor.model, precision=precision, use_cache=False)
        scores[precision] = evaluate_model(predictor, data)["segm"].ap
    assert scores["fp32"] > 0.3  # the demo model knows these shapes: the comparison means something
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.01, scores


def test_a_checkpoint_is_converted_in_a_child_process(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The converter holds Python's global lock for long stretches: in the window's worker thread it would
    stop the window drawing. A Predictor from a file converts in another process instead."""

    def no_conversion_here(*args, **kwargs):
        raise AssertionError("converted in this process")

    monkeypatch.setattr(openvino_backend, "_convert", no_conversion_here)
    predictor = Predictor(tiny_checkpoint, device="cpu", backend="openvino", cache_dir=tmp_path)
    assert predictor.backend.label == "OpenVINO fp32"
    assert len(list(tmp_path.glob("*/model.xml"))) == 3


def test_an_openvino_that_cannot_load_on_this_cpu_falls_back_to_torch(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """An installed OpenVINO whose native libraries fail to load (a CPU it does not support)."""
    broken = tmp_path / "site" / "openvino"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise OSError('this CPU lacks an instruction set OpenVINO needs')\n")
    code = (
        f"import sys, logging; sys.path.insert(0, {str(tmp_path / 'site')!r})\n"
        "logging.basicConfig(format='%(message)s')\n"
        "import numpy as np\n"
        "from maskrcnn_core import Predictor\n"
        f"p = Predictor({str(tiny_checkpoint)!r}, device='cpu')\n"
        "print(p.backend.label, p.predict([np.zeros((64, 64, 3), np.uint8)])[0].ok)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "torch fp32 True"
    lines = [line for line in done.stderr.splitlines() if "OpenVINO" in line]
    assert lines == [
        "OpenVINO cannot load here: this CPU lacks an instruction set OpenVINO needs: running on torch"
    ]


def test_the_heads_tiers_caching_pass_gets_the_same_features_from_the_cpu_backend(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from maskrcnn_core.engine.feature_cache import compute_features

    model = Predictor(tiny_checkpoint, device="cpu", backend="torch").model
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 64)]
    torch_features = compute_features(model, images)
    openvino_features = compute_features(model, images, OpenVinoSubNetworks(model, cache_dir=tmp_path))
    for a, b in zip(torch_features, openvino_features, strict=True):
        assert (a.image_size, a.padded_size) == (b.image_size, b.padded_size)
        assert list(a.levels) == list(b.levels)
        for level in a.levels:
            # both kept as float16: equal to its rounding
            torch.testing.assert_close(a.levels[level], b.levels[level], rtol=2e-3, atol=2e-3)


def test_a_heads_runs_validation_on_the_cpu_backends_backbone_finds_what_torch_finds(tmp_path: Path) -> None:
    """The heads tier scores through FrozenBackboneNetworks: the compiled backbone's features (kept for the
    next validation), the heads in torch. The demo model on synthetic images: the same detections."""
    from maskrcnn_core.data import generate_synthetic_dataset
    from maskrcnn_core.engine.feature_cache import FrozenBackboneNetworks

    generate_synthetic_dataset(tmp_path / "shapes", num_images=4, seed=5)
    paths = sorted((tmp_path / "shapes" / "images").iterdir())
    model = Predictor(DEMO_MODEL, device="cpu", backend="torch").model
    expected = Predictor.from_model(model).predict(paths)
    networks = FrozenBackboneNetworks(model, OpenVinoSubNetworks(model, cache_dir=tmp_path / "ov"), 1 << 30)
    for _ in range(2):  # computed, then reused
        got = Predictor.from_model(model, subnetworks=networks).predict(paths)
        assert networks.computed == 2  # two batches of two images
        for ours, theirs in zip(got, expected, strict=True):
            sure = np.flatnonzero(theirs.scores >= 0.5)
            assert len(sure) > 0
            for j in sure:  # each of torch's sure detections is found, same class, same box to rounding
                near = np.abs(ours.boxes - theirs.boxes[j]).max(axis=1) < 0.5
                assert (near & (ours.labels == theirs.labels[j])).any(), (j, theirs.boxes[j])
