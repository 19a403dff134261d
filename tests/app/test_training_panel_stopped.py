"""A stopped run's progress bar says where it stopped, not a bare percentage (a new user read "22%" and
could not tell what Resume would continue from)."""

from __future__ import annotations

from app.project.records import TrainingRunRecord
from app.session.run_history import PastRun
from app.ui.panels.training_panel import STOPPED_RUN_TEXT, TrainingPanel
from app.workers.training_runner import RunOutcome
from maskrcnn_core.protocol import CachingEvent, ProgressEvent, RunStatus, StartEvent

_RUN = {"name": "ft1", "base": "base", "train_images": 3, "val_images": 1, "iterations": 200}


def _panel(qtbot) -> TrainingPanel:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.show_run_started(_RUN)
    return panel


def _progress(iteration: int) -> ProgressEvent:
    return ProgressEvent(iteration, 200, iteration / 3, {"total_loss": 1.0}, 0.0025, 2.0, 60.0, 10.0)


def test_a_cancelled_run_shows_the_iteration_it_stopped_at(qtbot):
    panel = _panel(qtbot)
    panel.show_event(StartEvent(0, 200, 2, 0.0025, 1, 3))
    for iteration in (20, 44):
        panel.show_event(_progress(iteration))
    panel.show_run_ended(RunOutcome(RunStatus.CANCELLED, 3, checkpoint="last.pt"))
    assert panel.progress.text() == "Stopped at iteration 44 of 200"


def test_a_failed_run_shows_where_it_stopped_and_a_finished_one_its_percentage(qtbot):
    panel = _panel(qtbot)
    panel.show_event(_progress(7))
    panel.show_run_ended(RunOutcome(RunStatus.FAILED, 1, message="out of memory"))
    assert panel.progress.text() == "Stopped at iteration 7 of 200"
    panel.show_run_started(_RUN)
    panel.show_event(_progress(200))
    panel.show_run_ended(RunOutcome(RunStatus.FINISHED, 0, model_path="model.pt"))
    assert panel.progress.text() == "100%"


def test_a_run_stopped_while_caching_features_says_so(qtbot):
    panel = _panel(qtbot)
    panel.show_event(StartEvent(0, 200, 2, 0.0025, 1, 3, tier="heads"))
    panel.show_event(CachingEvent(3, 8, 1.5))
    panel.show_run_ended(RunOutcome(RunStatus.CANCELLED, 3))
    assert panel.progress.text() == "Stopped while caching features 3/8"


def test_reopening_a_project_whose_last_run_was_stopped_shows_where_it_stopped(qtbot):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    record = TrainingRunRecord(7, RunStatus.CANCELLED, 1, None, {}, {}, "2026-01-01", "2026-01-01")
    events = (StartEvent(0, 200, 2, 0.0025, 1, 3), _progress(20), _progress(44))
    past = PastRun(record, "ft1", "base", 3, 1, 200, None, events, None)
    panel.show_past_run(past)
    assert panel.progress.text() == "Stopped at iteration 44 of 200"
    assert panel.figures.text() == STOPPED_RUN_TEXT
