"""Fine-tune from the menu, with the tier and "protect what the model knew", in a real window.

A real project (SQLite) on synthetic images whose truth is imported and verified; the model is the fake
predictor (it knows circle and square; the truth also has triangle and ring, new to it). The training and
scoring processes are real child processes that speak the engine's protocol (a few lines of Python each,
like tests/app/test_finetune_runner.py): the training one reports the heads tier's caching, its steps and
the new version's scores; the scoring one the base's. So the controller, the registry, the panel and the
dialog all run as in the app, on events that went through a process's stdout.

Checked: the dialog's tier reaches the request's argv and is offered again next time; the Training panel
shows the caching progress and the time left from the events; a new version that loses more than 0.02 mask
AP on the known classes is not activated, and the status bar and the panel say why; the first run's measured
times give the second dialog its estimate (none before); a version that keeps the known classes is activated;
cancelling during the caching pass leaves the project, its versions and the active model as they were.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from fake_predictor import open_with_fake_model
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from app.project.comparison import KNOWN_CLASSES, KNOWN_CLASSES_MAX_AP_LOSS
from app.project.records import ImageStatus
from app.project.run_timing import TIMING, RunTiming
from app.ui.finetune_dialog import FinetuneDialog
from app.ui.panels.run_progress import format_duration
from app.workers.training_runner import EvaluationRunner, TrainingRunner
from maskrcnn_core.protocol import CachingEvent, ProgressEvent, RunStatus

pytestmark = pytest.mark.gui

STEPS, CACHED = 3, 4  # the scripted run's steps, and the feature maps its caching pass computes
STEP_S, CACHE_S = 2.5, 1.5  # the seconds its events say each step and each cached image took
BASE_SCORES = {"circle": 0.6, "square": 0.6, "triangle": 0.0, "ring": 0.0}


def _segm(per_class: dict[str, float]) -> dict:
    entries = [{"category_id": i, "name": n, "ap": ap} for i, (n, ap) in enumerate(per_class.items(), 1)]
    overall = sum(per_class.values()) / len(per_class)
    return {"segm": {"ap": overall, "per_class_ap": entries}, "num_images": 2}


def _training_script(validation: dict) -> list[str]:
    """A training process: start (heads tier), caching, steps, the final model file, finished."""
    body = f"""
    import json, pathlib
    def emit(**e):
        print(json.dumps(e), flush=True)
    n = len(json.loads(pathlib.Path("train.json").read_text())["images"])
    emit(event="start", start_iteration=0, iterations={STEPS}, global_batch=2, base_lr=0.0025, world_size=1,
         num_train_images=n, tier="heads")
    for done in range(1, {CACHED} + 1):
        emit(event="caching", done=done, total={CACHED}, elapsed_s={CACHE_S} * done)
    for i in range(1, {STEPS} + 1):
        emit(event="progress", iteration=i, iterations={STEPS}, epoch=i * 2 / n,
             losses={{"total_loss": 1 / i}}, lr=0.0025, images_per_s=2 / {STEP_S},
             eta_s={STEP_S} * ({STEPS} - i), elapsed_s={STEP_S} * i)
    model = pathlib.Path("model_final.pt").resolve()
    model.write_bytes(b"a fine-tuned version: the fake predictor ignores the file")
    emit(event="finished", iteration={STEPS}, model=str(model), losses={{"total_loss": 0.3}},
         validation=json.loads({json.dumps(json.dumps(validation))}))
    """
    return ["-c", textwrap.dedent(body)]


def _scoring_script() -> list[str]:
    return ["-c", f"import json; print(json.dumps(json.loads({json.dumps(json.dumps(_segm(BASE_SCORES)))})))"]


def _train_with_script(monkeypatch, body: str) -> None:
    """The training process replaced by the Python ``body``; scoring by the base scores' script."""
    monkeypatch.setattr(
        TrainingRunner,
        "start",
        lambda runner, request, *, workdir, log_path: runner.start_command(
            ["-c", textwrap.dedent(body)], workdir, log_path
        ),
    )
    monkeypatch.setattr(
        EvaluationRunner,
        "start",
        lambda runner, request, *, workdir, log_path: runner.start_command(
            _scoring_script(), workdir, log_path
        ),
    )


@pytest.fixture
def scripted_engine(monkeypatch):
    """The engine's processes replaced by scripts; ``requests`` collects what the controller asked for, and
    ``validation`` is the new version's scores the next run reports."""

    class Engine:
        requests: list = []
        validation: dict = {}

    def train(runner, request, *, workdir, log_path):  # noqa: ANN001, ANN202
        Engine.requests.append(request)
        runner.start_command(_training_script(Engine.validation), workdir, log_path)

    def score(runner, request, *, workdir, log_path):  # noqa: ANN001, ANN202
        runner.start_command(_scoring_script(), workdir, log_path)

    monkeypatch.setattr(TrainingRunner, "start", train)
    monkeypatch.setattr(EvaluationRunner, "start", score)
    return Engine


def _fine_tune(qtbot, window, tier: str | None) -> dict:
    """Model ▸ Fine-tune… with ``STEPS`` iterations and ``tier`` chosen (``None``: as offered); returns
    what the dialog showed."""
    shown: dict = {}

    def fill() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, FinetuneDialog)
        shown["offered"] = dialog.tier.currentData()
        if tier is not None:
            dialog.tier.setCurrentIndex(dialog.tier.findData(tier))
        dialog.length_unit.setCurrentText("iterations")
        dialog.iterations.setValue(STEPS)
        shown["auto"] = dialog.tier.itemText(dialog.tier.findData("auto"))
        shown["estimate"] = dialog.estimate_label.text()
        shown["train_images"] = len(dialog.split()[0])
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, fill)
    window.finetune_action.trigger()
    return shown


def test_tiers_time_and_known_classes_from_the_menu(
    qtbot, images_folder, synthetic_dataset, tmp_path, scripted_engine
):
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    doc = window.document
    window.import_annotation_file(synthetic_dataset)
    for image in doc.images():
        if image.status is ImageStatus.CORRECTED:
            doc.set_verified(image.id, True)
    registry, finetune, panel = window.registry, window.finetune, window.training_panel
    base_id = registry.active_id
    seen: list[tuple] = []  # what the panel showed right after each event (it is connected first)
    finetune.trainingEvent.connect(lambda e: seen.append((e, panel.progress.text(), panel.figures.text())))

    # 1. Heads only, chosen in the dialog; the new version gains on the new classes but forgets the old.
    forgets = {"circle": 0.5, "square": 0.55, "triangle": 0.7, "ring": 0.6}
    scripted_engine.validation = _segm(forgets)
    shown = _fine_tune(qtbot, window, "heads")
    assert shown["offered"] == "auto" and shown["auto"] == "Automatic: heads only on this CPU"
    assert shown["estimate"].startswith("no estimate yet")  # nothing measured yet: no number
    request = scripted_engine.requests[-1]
    assert request.tier == "heads" and request.to_argv()[-2:] == ["--tier", "heads"]
    qtbot.waitUntil(lambda: finetune.comparison is not None, timeout=20_000)
    caching = [(bar, text) for e, bar, text in seen if isinstance(e, CachingEvent)]
    assert [bar for bar, _ in caching] == [f"Caching features {d}/{CACHED}" for d in range(1, CACHED + 1)]
    assert f"{format_duration(CACHE_S * (CACHED - 1))} left" in caching[0][1]
    progress = [(e, bar) for e, bar, _ in seen if isinstance(e, ProgressEvent)]
    assert [bar for _, bar in progress] == [
        f"{e.iteration}/{STEPS} · {format_duration(e.eta_s)} left" for e, _ in progress
    ]
    comparison = finetune.comparison
    loss = (BASE_SCORES["circle"] + BASE_SCORES["square"] - forgets["circle"] - forgets["square"]) / 2
    assert comparison.known_classes == ("circle", "square") and comparison.new_is_better
    assert comparison.known_classes_loss == pytest.approx(loss) and loss > KNOWN_CLASSES_MAX_AP_LOSS
    with qtbot.assertNotEmitted(registry.activeChanged, wait=800):
        pass
    assert registry.active_id == base_id and window.segmentation.model_version_id == base_id
    line = window.statusBar().currentMessage()
    assert f"loses {loss:.3f} mask AP on the classes fake knew" in line and "Use new version" in line
    assert comparison.verdict in panel.verdict.text() and panel.use_new_button.isEnabled()
    cells = {panel.table.item(r, 0).text(): r for r in range(panel.table.rowCount())}
    row = cells[KNOWN_CLASSES]
    assert [panel.table.item(row, c).text() for c in (1, 2, 3)] == [
        "0.600",
        f"{0.6 - loss:.3f}",
        f"{-loss:+.3f}",
    ]
    timing = RunTiming.from_dict(registry.runs()[-1].metrics[TIMING])
    assert timing is not None and timing.tier == "heads" and timing.seconds_per_step == pytest.approx(STEP_S)

    # 2. The project offers heads again, with the time the first run measured; this version keeps the old.
    keeps = {"circle": 0.6, "square": 0.59, "triangle": 0.7, "ring": 0.6}
    scripted_engine.validation = _segm(keeps)
    shown = _fine_tune(qtbot, window, None)
    assert shown["offered"] == "heads"
    expected = STEP_S * STEPS + CACHE_S * CACHED * shown["train_images"] / timing.train_images
    assert shown["estimate"].startswith(f"about {format_duration(expected)} ")
    assert scripted_engine.requests[-1].tier == "heads"
    qtbot.waitUntil(
        lambda: finetune.comparison is not None and finetune.new_version_id is not None, timeout=20_000
    )
    new_id = finetune.new_version_id
    qtbot.waitUntil(lambda: window.segmentation.model_version_id == new_id, timeout=10_000)
    assert registry.active_id == new_id and finetune.comparison.activates
    assert "becomes the active model" in panel.verdict.text() or "is the active model" in panel.verdict.text()
    rows = [[panel.table.item(r, c).text() for c in range(4)] for r in range(panel.table.rowCount())]
    window.close()

    # Reopened, the panel shows the last run's table with its known and new classes, and no time left.
    again = open_with_fake_model(qtbot, images_folder, tmp_path)
    panel = again.training_panel
    assert [[panel.table.item(r, c).text() for c in range(4)] for r in range(panel.table.rowCount())] == rows
    assert KNOWN_CLASSES in [row[0] for row in rows] and "left" not in panel.progress.text()
    again.close()


def test_cancelling_during_caching_leaves_the_project_and_the_model_untouched(
    qtbot, images_folder, synthetic_dataset, tmp_path, monkeypatch
):
    # a training process that caches one image and then waits: SIGTERM ends it as the engine's cancel does
    body = """
    import json, signal, sys, time
    def emit(**e):
        print(json.dumps(e), flush=True)
    def stop(*_):
        emit(event="cancelled", iteration=0, checkpoint="")
        sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    emit(event="start", start_iteration=0, iterations=10, global_batch=2, base_lr=0.0025, world_size=1,
         num_train_images=4, tier="heads")
    emit(event="caching", done=1, total=8, elapsed_s=0.5)
    time.sleep(60)
    """
    _train_with_script(monkeypatch, body)
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    doc, store = window.document, window.document.store
    window.import_annotation_file(synthetic_dataset)
    before = (
        [(im.file_name, im.status, im.revision) for im in store.images()],
        [(r.id, r.rle["counts"], r.provenance) for r in store.instances()],
    )
    registry, finetune, panel = window.registry, window.finetune, window.training_panel
    base_id, versions = registry.active_id, [v.id for v in registry.versions()]
    _fine_tune(qtbot, window, "heads")
    qtbot.waitUntil(lambda: panel.progress.text() == "Caching features 1/8", timeout=10_000)
    with qtbot.waitSignal(finetune.runEnded, timeout=10_000):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert registry.runs()[-1].status is RunStatus.CANCELLED and "Cancelled" in panel.figures.text()
    assert registry.active_id == base_id and [v.id for v in registry.versions()] == versions
    assert (
        finetune.new_version_id is None and not finetune.can_resume()
    )  # no checkpoint before the first step
    assert TIMING not in registry.runs()[-1].metrics
    after = (
        [(im.file_name, im.status, im.revision) for im in store.images()],
        [(r.id, r.rle["counts"], r.provenance) for r in store.instances()],
    )
    assert after == before and doc.settings.finetune_tier == "heads"
    window.close()


def test_what_the_run_does_not_apply_is_told_in_the_status_bar(
    qtbot, images_folder, synthetic_dataset, tmp_path, monkeypatch
):
    # the engine's start event carries a notice when auto chose heads for a run that asked for more
    notice = "auto chose the heads tier (training on a CPU), which does not apply the scale jitter 0.5-2"
    body = f"""
    import json, sys
    def emit(**e):
        print(json.dumps(e), flush=True)
    emit(event="start", start_iteration=0, iterations=10, global_batch=2, base_lr=0.0025, world_size=1,
         num_train_images=4, tier="heads", notice={notice!r})
    emit(event="cancelled", iteration=0, checkpoint="")
    sys.exit(3)
    """
    _train_with_script(monkeypatch, body)
    window = open_with_fake_model(qtbot, images_folder, tmp_path)
    window.import_annotation_file(synthetic_dataset)
    told: list[str] = []
    window.finetune.message.connect(told.append)
    with qtbot.waitSignal(window.finetune.runEnded, timeout=10_000):
        _fine_tune(qtbot, window, None)
    assert notice in told
    window.close()
