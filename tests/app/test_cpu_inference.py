"""Model ▸ CPU inference: the app-wide choice of backend and precision, what the real predictor then runs,
and the status bar that says it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_predictor import FakePredictor, open_with_fake_model
from tiny_model import TINY

from app.project import inference_settings
from app.project.inference_settings import InferenceSettings
from app.workers.inference import InferenceWorker, checkpoint_factory
from maskrcnn_core.inference_options import cpu_has_native_bf16, openvino_installed


def test_the_choice_is_kept_and_a_bad_file_gives_the_defaults(tmp_path: Path) -> None:
    assert inference_settings.load() == InferenceSettings("auto", allow_reduced_precision=False)
    inference_settings.save(InferenceSettings("torch", allow_reduced_precision=True))
    assert inference_settings.load() == InferenceSettings("torch", allow_reduced_precision=True)
    path = inference_settings._path()
    path.write_text('{"cpu_backend": "tensorrt", "allow_reduced_precision": "yes"}')
    assert inference_settings.load() == InferenceSettings()  # each bad value falls back to its default
    path.write_text("{not json")
    assert inference_settings.load() == InferenceSettings()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from maskrcnn_core import mask_rcnn_mobilenet_v2_fpn, save_checkpoint

    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(class_names=("cell",), **TINY)
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", model)


@pytest.mark.skipif(not openvino_installed(), reason="OpenVINO is not installed")
def test_the_real_predictor_runs_what_the_settings_say(tiny_checkpoint: Path, qtbot) -> None:
    worker = InferenceWorker()
    with qtbot.waitSignal(worker.modelLoaded, timeout=120_000) as loaded:
        worker.load(checkpoint_factory(tiny_checkpoint, device="cpu"))
    assert loaded.args[0].runs_on == "CPU, OpenVINO fp32"

    inference_settings.save(InferenceSettings("torch"))
    with qtbot.waitSignal(worker.modelLoaded, timeout=120_000) as loaded:
        worker.load(checkpoint_factory(tiny_checkpoint, device="cpu"))
    assert loaded.args[0].runs_on == "CPU, torch fp32"

    # reduced precision allowed: bfloat16 only where the CPU has it natively
    inference_settings.save(InferenceSettings("auto", allow_reduced_precision=True))
    with qtbot.waitSignal(worker.modelLoaded, timeout=120_000) as loaded:
        worker.load(checkpoint_factory(tiny_checkpoint, device="cpu"))
    assert loaded.args[0].runs_on == f"CPU, OpenVINO {'bf16' if cpu_has_native_bf16() else 'fp32'}"


def test_choosing_in_the_menu_saves_the_choice_and_reloads_the_model(
    qtbot, images_folder: Path, tmp_path: Path
) -> None:
    builds = []
    predictor = FakePredictor()

    def factory(_source: str):
        def build() -> FakePredictor:
            builds.append(inference_settings.load())
            return predictor

        return build

    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    window.segmentation._predictor_factory = factory  # count the builds from here on
    assert window.device_label.text() == "Device: CPU (a stand-in for the model)"
    actions = {a.text().split(":")[0]: a for a in window.cpu_inference_menu.actions()}
    assert list(actions) == ["OpenVINO, exact (float32)", "OpenVINO, faster (bfloat16)", "torch only"]
    assert actions["OpenVINO, exact (float32)"].isChecked()
    bf16 = actions["OpenVINO, faster (bfloat16)"]
    assert bf16.isEnabled() == (cpu_has_native_bf16() and openvino_installed())
    if not cpu_has_native_bf16():
        assert bf16.text().endswith("not on this CPU (no native bfloat16)")

    actions["torch only"].trigger()
    qtbot.waitUntil(lambda: len(builds) == 1, timeout=5000)
    assert builds == [InferenceSettings("torch")]
    assert inference_settings.load() == InferenceSettings("torch")
    assert actions["torch only"].isChecked()
    actions["torch only"].trigger()  # the same choice again: nothing to reload
    qtbot.wait(50)
    assert len(builds) == 1
