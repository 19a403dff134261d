"""The text that says what the active model knows, from real checkpoints' ModelInfo."""

from __future__ import annotations

from app.project.model_sources import DEMO_MODEL
from app.session.model_description import DEMO_NOTICE, describe_model
from maskrcnn_core.model.weights import load_model, model_info
from maskrcnn_core.types import ClassMap, ModelInfo


def test_the_bundled_demo_model_is_marked_synthetic_and_names_its_classes():
    info = model_info(load_model(DEMO_MODEL), DEMO_MODEL)
    description = describe_model(info)
    assert description.is_demo
    names = info.class_names
    assert description.classes == f"{len(names)} classes: {', '.join(names[:3])}, …"
    assert DEMO_NOTICE in description.status_text
    assert f"trained on {info.metadata['num_train_images']} images" in description.details
    assert "Get models" in description.details


def test_a_user_model_without_training_metadata_says_so_and_is_not_the_demo(tmp_path):
    info = ModelInfo("mine", "resnet50_fpn", ClassMap.from_lists(["cell"]), path=str(tmp_path / "m.pt"))
    description = describe_model(info)
    assert not description.is_demo
    assert description.status_text == "Model: mine · 1 class: cell"
    assert "not recorded" in description.trained_on
