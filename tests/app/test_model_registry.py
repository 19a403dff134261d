"""The model registry, the one owner of which model is active: real project files, real windows.

Checked: a loaded file becomes a version and the project keeps its id (not its path); an old project's
path is migrated; a failed load changes nothing; a fine-tuned version is activated only when it scores
better; the versions panel activates by id; reopening a project shows its last training run; and no code
of the app but the registry writes the active-model settings or loads a model into the worker.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fake_predictor import FakePredictor
from PySide6.QtCore import Qt

from app.project.comparison import compare
from app.project.settings import ProjectSettings
from app.project.store import ProjectStore
from app.session.model_registry import ActiveModel, ModelRegistry
from app.session.run_history import BASE_ERROR, BASE_MODEL, BASE_VALIDATION, VALIDATION
from app.ui.main_window import MainWindow
from maskrcnn_core.protocol import (
    METRICS_LOG,
    EvaluationEvent,
    FinishedEvent,
    ProgressEvent,
    RunStatus,
    StartEvent,
)
from maskrcnn_core.types import Category, ClassMap, ModelInfo

APP = Path(__file__).resolve().parents[2] / "app"
INFO = ModelInfo(name="fake", arch="none", class_map=ClassMap((Category(1, "circle"),)))


def _checkpoint(folder: Path, name: str) -> str:
    path = folder / name
    path.write_bytes(f"stands for a checkpoint ({name}): the fake predictor ignores it".encode())
    return str(path)


def _segm(ap: float) -> dict:
    return {
        "segm": {"ap": ap, "per_class_ap": [{"category_id": 1, "name": "circle", "ap": ap}]},
        "num_images": 3,
    }


def _window(qtbot, broken: str = "") -> MainWindow:
    """A window whose models are fake predictors; a checkpoint named ``broken`` fails to load."""

    def factory(source: str):  # noqa: ANN202
        def fail() -> FakePredictor:
            raise ValueError("this checkpoint is not a Mask R-CNN")

        return fail if broken and source.endswith(broken) else FakePredictor

    window = MainWindow(predictor_factory=factory)
    qtbot.addWidget(window)
    return window


def _loaded(qtbot, window: MainWindow, version_id: int | None = None) -> None:
    def done() -> bool:
        seg = window.segmentation
        return seg.model is not None and (version_id is None or seg.model_version_id == version_id)

    qtbot.waitUntil(done, timeout=10_000)


# ------------------------------------------------------------------------------------- the registry itself
def test_a_loaded_file_becomes_a_version_and_the_project_keeps_its_id(qtbot, tmp_path):
    weights = _checkpoint(tmp_path, "a.pt")
    with ProjectStore.open(tmp_path) as store:
        registry = ModelRegistry(store)
        with qtbot.waitSignal(registry.activeChanged) as announced:
            registry.activate_file(weights)
        requested = announced.args[0]
        assert (
            requested == ActiveModel(weights) and requested.version is None
        )  # not a version before it loads
        assert ProjectSettings(store).active_version_id is None
        version_id = registry.loaded(requested, INFO, "cafe")
        (version,) = registry.versions()
        assert (version.id, version.path, version.sha256, version.name) == (
            version_id,
            weights,
            "cafe",
            "fake",
        )
        assert registry.active_id == version_id
    with ProjectStore.open(tmp_path) as store:  # reopened: the id is kept, not the path
        assert ProjectSettings(store).active_version_id == version_id
        assert ProjectSettings(store).active_model_path is None
        registry = ModelRegistry(store)
        with qtbot.waitSignal(registry.activeChanged) as announced:
            registry.restore(fallback=_checkpoint(tmp_path, "other.pt"))
        assert announced.args[0].version.id == version_id
        with pytest.raises(ValueError, match="Model file not found"):
            registry.activate_file(str(tmp_path / "missing.pt"))
        assert registry.active_id == version_id


def test_an_old_projects_active_path_is_migrated_to_its_version_id(qtbot, tmp_path):
    known, unknown = _checkpoint(tmp_path, "known.pt"), _checkpoint(tmp_path, "unknown.pt")
    with ProjectStore.open(tmp_path) as store:
        version_id = store.add_model_version(name="old", arch="none", path=known, sha256="ab", categories=[])
        store.set_setting(ProjectSettings.active_model_path.key, known)  # as the app before the registry
        ModelRegistry(store)
        assert ProjectSettings(store).active_version_id == version_id
        assert ProjectSettings(store).active_model_path is None
    # A path that is no version yet is loaded as a file, and replaced by its id once it has loaded.
    with ProjectStore.open(tmp_path) as store:
        settings = ProjectSettings(store)
        store.set_setting(ProjectSettings.active_version_id.key, None)
        store.set_setting(ProjectSettings.active_model_path.key, unknown)
        registry = ModelRegistry(store)
        with qtbot.waitSignal(registry.activeChanged) as announced:
            registry.restore(fallback=known)
        assert announced.args[0] == ActiveModel(unknown)
        new_id = registry.loaded(announced.args[0], INFO, "cd")
        assert (settings.active_version_id, settings.active_model_path) == (new_id, None)


def test_a_fine_tuned_version_is_activated_only_when_it_scores_better(qtbot, tmp_path):
    base_path, new_path = _checkpoint(tmp_path, "base.pt"), _checkpoint(tmp_path, "new.pt")
    with ProjectStore.open(tmp_path) as store:
        registry = ModelRegistry(store)
        base = registry.register(name="base", arch="none", path=base_path, sha256="1", categories=[(1, "c")])
        registry.activate(base)
        registry.loaded(ActiveModel(base_path, registry.version(base)), INFO, "1")
        run = registry.start_run(base_version_id=base, config={"name": "ft"})
        new = registry.register(
            name="ft", arch="none", path=new_path, sha256="2", categories=[(1, "c")], training_run_id=run
        )
        registry.finish_run(run, RunStatus.FINISHED, {VALIDATION: _segm(0.4)})
        assert (
            registry.run(run).status is RunStatus.FINISHED
            and registry.run(run).output_model_version_id == new
        )

        worse = compare("base", _segm(0.5), "ft", _segm(0.4))
        with qtbot.assertNotEmitted(registry.activeChanged, wait=500):
            assert not registry.propose(new, worse)
        assert registry.active_id == base
        better = compare("base", _segm(0.3), "ft", _segm(0.4))
        with qtbot.waitSignal(registry.activeChanged, timeout=5000) as announced:
            assert registry.propose(new, better)
        assert announced.args[0].version.id == new
        # the project keeps the base until the new version has really loaded
        assert ProjectSettings(store).active_version_id == base
        registry.loaded(announced.args[0], INFO, "2")
        assert ProjectSettings(store).active_version_id == new


# ---------------------------------------------------------------------------------------- in the window
def test_load_weights_and_the_versions_panel_activate_through_the_registry(qtbot, images_folder, tmp_path):
    first, second = _checkpoint(tmp_path, "first.pt"), _checkpoint(tmp_path, "second.pt")
    window = _window(qtbot, broken="broken.pt")
    assert window.open_folder(images_folder, weights=first)
    _loaded(qtbot, window)
    registry, seg = window.registry, window.segmentation
    first_id = seg.model_version_id
    window.load_model(second)  # Model ▸ Load weights…
    qtbot.waitUntil(lambda: seg.model_version_id not in (None, first_id), timeout=10_000)
    second_id = seg.model_version_id
    assert registry.active_id == second_id == registry.settings.active_version_id
    assert [v.path for v in registry.versions()] == [first, second]
    assert window.versions_panel.active_name() is not None

    # The versions panel asks by id; the registry activates, the segmentation follows.
    window.versions_panel.select_version(first_id)
    qtbot.mouseClick(window.versions_panel.activate_button, Qt.MouseButton.LeftButton)
    _loaded(qtbot, window, first_id)
    assert registry.settings.active_version_id == first_id
    row = next(r for r in window.versions_panel._rows if r.id == first_id)
    assert row.active

    # A checkpoint that fails to load is a message; the project and the worker keep the model they had.
    window.load_model(_checkpoint(tmp_path, "broken.pt"))
    qtbot.waitUntil(lambda: "failed" in window.model_label.text(), timeout=10_000)
    assert registry.active_id == first_id == registry.settings.active_version_id
    assert seg.model_version_id == first_id and len(registry.versions()) == 2
    window.load_model(str(tmp_path / "gone.pt"))
    assert "Model file not found" in window.statusBar().currentMessage()
    window.close()


def test_reopening_the_project_shows_its_last_training_run(qtbot, images_folder, tmp_path):
    base_path, new_path = _checkpoint(tmp_path, "base.pt"), _checkpoint(tmp_path, "ft.pt")
    window = _window(qtbot)
    assert window.open_folder(images_folder, weights=base_path)
    _loaded(qtbot, window)
    registry = window.registry
    base_id = registry.active_id
    # A fine-tuning run as the fine-tune controller records it: the run record, its run folder's metrics
    # log (the training process's events), the new version, and both versions' scores.
    run_dir = tmp_path / "runs" / "ft"
    run_dir.mkdir(parents=True)
    config = {
        "name": "ft",
        "run_dir": str(run_dir),
        "num_train_images": 5,
        "num_val_images": 1,
        "iterations": 4,
    }
    run_id = registry.start_run(base_version_id=base_id, config=config)
    losses = [{"total_loss": 2.0 / i, "mask_loss": 1.0 / i} for i in range(1, 5)]
    events = [StartEvent(0, 4, 2, 0.0025, 1, 5)]
    events += [ProgressEvent(i, 4, i / 2.5, losses[i - 1], 0.0025, 3.0, 1.0, float(i)) for i in range(1, 5)]
    events += [EvaluationEvent(2, _segm(0.25)), EvaluationEvent(4, _segm(0.4))]
    events += [FinishedEvent(4, new_path, losses[-1], _segm(0.4))]
    lines = [event.to_json() for event in events] + ['{"event": "progress", "iteration": 5, "los']  # cut off
    (run_dir / METRICS_LOG).write_text("\n".join(lines))
    new_id = registry.register(
        name="ft", arch="none", path=new_path, sha256="ft", categories=[(1, "circle")], training_run_id=run_id
    )
    metrics = {VALIDATION: _segm(0.4), BASE_VALIDATION: _segm(0.3), BASE_ERROR: "", BASE_MODEL: "fake"}
    registry.finish_run(run_id, RunStatus.FINISHED, metrics)
    window.close()
    assert window.training_panel.table.rowCount() == 0  # the closed project's run is gone from the panel

    again = _window(qtbot)
    assert again.open_folder(images_folder)
    panel = again.training_panel
    assert "ft" in panel.title.text() and "5 training" in panel.title.text()
    series = panel.loss_chart.series()
    assert [x for x, _ in series["total_loss"]] == [1.0, 2.0, 3.0, 4.0]
    assert series["total_loss"][-1][1] == pytest.approx(0.5)
    assert [y for _, y in panel.ap_chart.series()["mask AP"]] == [0.25, 0.4]
    comparison = compare("fake", _segm(0.3), "ft", _segm(0.4))
    assert panel.table.rowCount() == len(comparison.rows)
    cells = [[panel.table.item(r, c).text() for c in range(4)] for r in range(panel.table.rowCount())]
    assert cells[0] == ["all classes", "0.300", "0.400", "+0.100"]
    assert panel.progress.value() == 4
    assert again.finetune.new_version_id == new_id and again.finetune.comparison == comparison
    _loaded(qtbot, again)
    assert again.registry.active_id == base_id  # reopening shows the run; it does not switch the model
    again.close()


# --------------------------------------------------------------------------------------- the one owner
ACTIVE_SETTINGS = (ProjectSettings.active_version_id, ProjectSettings.active_model_path)
OWNER = Path("session/model_registry.py")
SEGMENTATION = Path("session/segmentation.py")
SETTINGS = Path("project/settings.py")
WORKER_LOADING = ("_load_active", "_loadRequested")  # the segmentation's own way into the worker


def _offences(source: str, relative: Path) -> list[str]:
    """Where ``source`` changes the active model without owning it: only the registry writes the
    active-model settings and announces the active model; only the segmentation loads it into the worker."""
    keys = {s.key for s in ACTIVE_SETTINGS}
    names = {name for name, s in ProjectSettings.fields().items() if s in ACTIVE_SETTINGS}

    def writes_setting(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):  # settings.active_version_id = ...
            return node.attr in names and isinstance(node.ctx, ast.Store | ast.Del)
        return (  # settings.write(ProjectSettings.active_version_id, ...)
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("write", "set_setting")
            and any(isinstance(a, ast.Attribute) and a.attr in names for a in node.args)
        )

    def announces(node: ast.AST) -> bool:  # x.activeChanged.emit(...)
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "emit"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "activeChanged"
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if relative not in (OWNER, SETTINGS) and isinstance(node, ast.Constant) and node.value in keys:
            found.append(f"{where} names the setting {node.value!r}")
        if relative != OWNER and writes_setting(node):
            found.append(f"{where} writes an active-model setting")
        if relative != OWNER and announces(node):
            found.append(f"{where} announces an active model")
        if relative != SEGMENTATION and isinstance(node, ast.Attribute) and node.attr in WORKER_LOADING:
            found.append(f"{where} loads a model into the worker ({node.attr})")
    return found


def test_the_checker_finds_each_kind_of_offence():
    bad = """
store.set_setting("active_version_id", 3)
settings.active_model_path = "/m.pt"
settings.write(ProjectSettings.active_version_id, 3)
seg._load_active(model)
seg._loadRequested.emit(factory, "/m.pt")
registry.activeChanged.emit(model)
"""
    assert len(_offences(bad, Path("ui/somewhere.py"))) == 6
    assert _offences(bad.replace("_load_active", "load").replace("_loadRequested", "x"), OWNER) == []


def test_only_the_registry_changes_the_active_model():
    """Nothing in app/ but the registry writes the active-model settings or tells the segmentation to
    load a model: the segmentation loads only what the registry's activeChanged announces."""
    offences = []
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP)
        offences += _offences(path.read_text(encoding="utf-8"), relative)
    assert offences == []
    assert "registry.activeChanged.connect(self._load_active)" in (APP / SEGMENTATION).read_text()
