"""The box-prompt tool: drag a box on the canvas, the worker thread's model segments it, one undo step.

With a stand-in predictor (exact pixels, category choice) and with a real small Mask R-CNN checkpoint
(the instance equals what ``Predictor.segment_boxes`` gives for that box, computed off the GUI thread).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fake_predictor import FakePredictor
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from app.project.records import Provenance
from app.ui.main_window import MainWindow
from app.workers.inference import checkpoint_factory
from maskrcnn_core.masks import rle_to_mask
from maskrcnn_core.types import CroppedMask, Prediction

pytestmark = pytest.mark.gui

H, W = 120, 160


class BoxPredictor(FakePredictor):
    """Answers a box with the ellipse inscribed in its whole-pixel part, as class "square"."""

    def __init__(self) -> None:
        super().__init__()
        self.on_gui_thread: set[bool] = set()

    def segment_boxes(self, image, boxes, labels=None):  # noqa: ANN001, ANN201
        self.on_gui_thread.add(threading.current_thread() is threading.main_thread())
        with Image.open(image) as im:
            width, height = im.size
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[0])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        crop = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
        label = 2 if labels is None else int(labels[0])
        return Prediction(
            image_size=(height, width),
            boxes=np.asarray(boxes, np.float32),
            scores=np.array([0.8], np.float32),
            labels=np.array([label]),
            category_ids=np.array([label]),
            masks=(CroppedMask(x0, y0, crop, (height, width)),),
            source=str(image),
        )


def _open(qtbot, tmp_path, factory) -> MainWindow:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / "a.png")
    window = MainWindow(predictor_factory=factory)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    weights = tmp_path / "model.pt"
    if not weights.exists():
        weights.write_bytes(b"fake")
    assert window.open_folder(folder, weights=str(weights))
    qtbot.waitUntil(lambda: window.segmentation.model is not None, timeout=60_000)
    qtbot.waitUntil(window.canvas.has_image, timeout=5000)
    window.activateWindow()
    window.canvas.setFocus()
    return window


def _drag_box(qtbot, window, x0, y0, x1, y1) -> tuple[float, float, float, float]:
    viewport = window.canvas.viewport()
    a, b = window.canvas.mapFromScene(QPointF(x0, y0)), window.canvas.mapFromScene(QPointF(x1, y1))
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)
    pa, pb = window.canvas.mapToScene(a), window.canvas.mapToScene(b)
    return pa.x(), pa.y(), pb.x(), pb.y()


def _records(window):
    return window.document.store.instances(window.document.current_image_id)


def test_box_prompt_adds_the_models_mask_in_one_undo_step(qtbot, tmp_path):
    predictor = BoxPredictor()
    window = _open(qtbot, tmp_path, lambda _source: lambda: predictor)
    qtbot.keyClick(window.canvas, Qt.Key.Key_R)
    assert window.editor.tool.name == "box"
    box = _drag_box(qtbot, window, 20, 30, 100, 90)
    qtbot.waitUntil(lambda: len(_records(window)) == 1, timeout=5000)
    assert predictor.on_gui_thread == {False}  # the worker thread ran it
    record = _records(window)[0]
    expected = predictor.segment_boxes(window.document.image_path(record.image_id), np.array([box]))
    assert np.array_equal(rle_to_mask(record.rle).to_full(), expected.masks[0].to_full())
    assert window.document.category(record.category_id).name == "square"  # the model's class
    assert record.provenance is Provenance.EDITED and record.score == pytest.approx(0.8)
    # Seen in the window: "Box prompt: ring (0.00)" left a new user guessing what the number was.
    assert window.statusBar().currentMessage() == f"Box prompt: added square, score {record.score:.2f}"
    assert window.editor.selection() == [record.id]
    assert window.undo_stack.count() == 1
    window.undo_stack.undo()
    assert _records(window) == []
    # With "use the model's category" off, the current category is used (and its mask head asked for).
    window.edit_actions.model_category_action.setChecked(False)
    circle = window.document.ensure_categories(["circle"])["circle"]
    window.editor.set_current_category(circle)
    _drag_box(qtbot, window, 10, 10, 40, 50)
    qtbot.waitUntil(lambda: len(_records(window)) == 1, timeout=5000)
    assert _records(window)[0].category_id == circle


def test_box_prompt_without_a_box_capable_model_says_so(qtbot, tmp_path):
    window = _open(qtbot, tmp_path, lambda _source: lambda: FakePredictor())  # predict() only
    window.editor.set_tool("box")
    with qtbot.waitSignal(window.segmentation.boxReady, timeout=5000):
        _drag_box(qtbot, window, 20, 30, 100, 90)
    qtbot.waitUntil(lambda: "cannot segment" in window.statusBar().currentMessage(), timeout=2000)
    assert _records(window) == [] and window.undo_stack.count() == 0


def test_box_prompt_says_when_the_model_does_not_know_the_current_category(qtbot, tmp_path):
    predictor = BoxPredictor()
    window = _open(qtbot, tmp_path, lambda _source: lambda: predictor)
    assert not window.segmentation.model.info.class_map.has_name("zebra")
    window.editor.set_tool("box")
    window.edit_actions.model_category_action.setChecked(False)
    zebra = window.document.ensure_categories(["zebra"])["zebra"]
    window.editor.set_current_category(zebra)
    _drag_box(qtbot, window, 20, 30, 100, 90)
    assert "the model does not know 'zebra'" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: len(_records(window)) == 1, timeout=5000)
    message = window.statusBar().currentMessage()
    assert "the model does not know 'zebra'" in message and "'square'" in message  # the class it used
    assert _records(window)[0].category_id == zebra


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from maskrcnn_core import mask_rcnn_mobilenet_v2_fpn, save_checkpoint

    torch.manual_seed(0)
    model = mask_rcnn_mobilenet_v2_fpn(
        class_names=("cat", "dog"),
        backbone_weights=None,
        fpn_channels=32,
        hidden_dim=64,
        mask_hidden_channels=32,
        min_size=96,
        max_size=160,
    )
    with torch.no_grad():  # a decisive untrained model: "dog" wins, masks are not all 0.5
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, -2.0, 4.0]))
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, metadata={"name": "tiny"})


def test_box_prompt_with_a_real_model(qtbot, tmp_path, tiny_checkpoint):
    from maskrcnn_core.engine.predictor import Predictor

    window = _open(qtbot, tmp_path, lambda source: checkpoint_factory(tiny_checkpoint, device="cpu"))
    window.editor.set_tool("box")
    with qtbot.waitSignal(window.segmentation.boxReady, timeout=30_000):
        box = _drag_box(qtbot, window, 20, 30, 100, 90)
    image = window.document.image_path(window.document.current_image_id)
    direct = Predictor(tiny_checkpoint, device="cpu").segment_boxes(str(image), np.array([box], np.float32))
    assert direct.masks[0].area > 0  # the decisive weights above make sure of it
    qtbot.waitUntil(lambda: len(_records(window)) == 1, timeout=5000)
    record = _records(window)[0]
    assert np.array_equal(rle_to_mask(record.rle).to_full(), direct.masks[0].to_full())
    assert window.document.category(record.category_id).name == "dog"
    assert record.score == pytest.approx(float(direct.scores[0]), abs=1e-5)
