"""The training and evaluation runners against real child processes that speak the CLI's protocol.

Each child is a few lines of Python (``python -c``) printing JSON lines and exiting with the CLI's exit
codes, so every ending (finished, failed, bad input, cancelled by SIGTERM, killed) is checked in well
under a second without loading torch; one test starts the real engine command from a ``TrainRequest``.
"""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

from app.workers.training_runner import EvaluationRunner, RunOutcome, TrainingRunner, read_log_tail
from maskrcnn_core.protocol import (
    CheckpointEvent,
    EventType,
    ExitCode,
    ProgressEvent,
    RunStatus,
    TrainingEvent,
    TrainRequest,
)

pytestmark = pytest.mark.gui


def _script(body: str) -> list[str]:
    prelude = (
        "import json, os, signal, sys, time\n"
        "def emit(**e):\n    print(json.dumps(e), flush=True)\n"
        "def start(iterations):\n"
        "    emit(event='start', start_iteration=0, iterations=iterations, global_batch=2, base_lr=0.0025,\n"
        "         world_size=1, num_train_images=4)\n"
    )
    return ["-c", prelude + textwrap.dedent(body)]


def _run(qtbot, tmp_path, body: str, *, during=None) -> tuple[RunOutcome, list[TrainingEvent]]:
    runner = TrainingRunner()
    events: list[TrainingEvent] = []
    runner.trainingEvent.connect(events.append)
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        runner.start_command(_script(body), tmp_path, tmp_path / "train.log")
        if during is not None:
            during(runner, events)
    assert not runner.running
    return blocker.args[0], events


def test_events_arrive_in_order_and_finished_carries_the_model(qtbot, tmp_path):
    outcome, events = _run(
        qtbot,
        tmp_path,
        """
        start(2)
        sys.stdout.write('{"event": "progress", "iteration": 1, "iterations": 2, "epoch": 0.5, ')
        sys.stdout.flush(); time.sleep(0.05)  # a line split across two writes
        sys.stdout.write('"losses": {"total_loss": 1.5}, "lr": 0.001, "images_per_s": 2.0, "eta_s": 1.0, '
                         '"elapsed_s": 1.0}\\n'); sys.stdout.flush()
        print("a stray line that is not JSON", flush=True)
        print("log text", file=sys.stderr)
        emit(event="evaluation", iteration=2, metrics={"segm": {"ap": 0.5}})
        emit(event="checkpoint", iteration=2, path="ck.pt")
        emit(event="finished", iteration=2, model="model_final.pt", losses={"total_loss": 1.0},
             validation={"segm": {"ap": 0.5}})
        """,
    )
    assert [e.type for e in events] == [
        EventType.START,
        EventType.PROGRESS,
        EventType.EVALUATION,
        EventType.CHECKPOINT,
        EventType.FINISHED,
    ]
    assert isinstance(events[1], ProgressEvent) and events[1].losses["total_loss"] == 1.5
    assert outcome.status is RunStatus.FINISHED and outcome.exit_code == ExitCode.OK
    assert outcome.model_path == "model_final.pt" and outcome.checkpoint == "ck.pt"
    assert outcome.validation == {"segm": {"ap": 0.5}}
    assert "log text" in (tmp_path / "train.log").read_text()


def test_a_failed_run_reports_the_error_event_and_the_log(qtbot, tmp_path):
    outcome, _ = _run(
        qtbot,
        tmp_path,
        """
        emit(event="checkpoint", iteration=4, path="ck.pt")
        print("Traceback: something deep went wrong", file=sys.stderr)
        emit(event="error", message="CUDA out of memory with 8 images per step")
        sys.exit(1)
        """,
    )
    assert outcome.status is RunStatus.FAILED and outcome.exit_code == ExitCode.FAILED
    assert outcome.message == "CUDA out of memory with 8 images per step"
    assert outcome.checkpoint == "ck.pt"
    assert "something deep went wrong" in outcome.log_tail


def test_bad_input_exit_code_2_says_why(qtbot, tmp_path):
    body = 'print("error: the training file t.json has no usable images", file=sys.stderr)\nsys.exit(2)'
    outcome, _ = _run(qtbot, tmp_path, body)
    assert outcome.status is RunStatus.FAILED and outcome.exit_code == ExitCode.BAD_INPUT
    assert "no usable images" in outcome.message


def test_cancel_sends_sigterm_and_the_run_keeps_its_checkpoint(qtbot, tmp_path):
    body = """
        def stop(signum, frame):
            emit(event="checkpoint", iteration=3, path="last.pt")
            emit(event="cancelled", iteration=3, checkpoint="last.pt")
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
        start(100)
        while True:
            time.sleep(0.01)
        """

    def cancel_after_start(runner, events):
        qtbot.waitUntil(lambda: bool(events), timeout=10_000)
        runner.cancel()

    outcome, _ = _run(qtbot, tmp_path, body, during=cancel_after_start)
    assert outcome.status is RunStatus.CANCELLED and outcome.exit_code == ExitCode.CANCELLED
    assert outcome.checkpoint == "last.pt"


def test_a_killed_process_is_reported_as_a_crash(qtbot, tmp_path):
    body = """
        emit(event="checkpoint", iteration=2, path="ck.pt")
        while True:
            time.sleep(0.01)
        """

    def kill_it(runner, events):
        qtbot.waitUntil(lambda: bool(events), timeout=10_000)
        os.kill(runner.pid, signal.SIGKILL)

    outcome, _ = _run(qtbot, tmp_path, body, during=kill_it)
    assert outcome.status is RunStatus.FAILED and outcome.exit_code is None
    assert "crashed" in outcome.message and outcome.checkpoint == "ck.pt"


def test_a_cancel_that_hangs_is_killed_after_the_grace_period(qtbot, tmp_path):
    body = """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        start(1)
        while True:
            time.sleep(0.01)
        """

    def cancel_quickly(runner, events):
        qtbot.waitUntil(lambda: bool(events), timeout=10_000)
        runner.cancel(grace_ms=200)

    outcome, _ = _run(qtbot, tmp_path, body, during=cancel_quickly)
    assert outcome.status is RunStatus.FAILED and "stopped" in outcome.message


def test_evaluation_runner_parses_the_metrics(qtbot, tmp_path):
    runner = EvaluationRunner()
    metrics = {"segm": {"ap": 0.25, "per_class_ap": [{"category_id": 1, "name": "circle", "ap": 0.25}]}}
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        body = f"print(json.dumps({metrics!r}, indent=2))"
        runner.start_command(_script(body), tmp_path, tmp_path / "e.log")
    assert blocker.args == [metrics, ""]
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        runner.start_command(
            _script('print("error: checkpoint not found: x.pt", file=sys.stderr)\nsys.exit(2)'),
            tmp_path,
            tmp_path / "e.log",
        )
    assert blocker.args[0] == {} and "checkpoint not found" in blocker.args[1]


def test_lines_that_break_the_protocol_are_kept_for_the_log_and_never_crash_the_runner(qtbot, tmp_path):
    outcome, events = _run(
        qtbot,
        tmp_path,
        """
        emit(event="checkpoint", iteration=1, path="ck.pt")
        emit(event="done", iteration=2, model="model_final.pt", losses={})  # a word of an old engine
        emit(event="checkpoint", iteration="two", path="ck2.pt")
        """,
    )
    assert events == [CheckpointEvent(iteration=1, path="ck.pt")]
    # exit 0 without a finished event is no success: the message says what was missing and why
    assert outcome.status is RunStatus.FAILED and outcome.exit_code == ExitCode.OK
    assert "without reporting its model" in outcome.message and "'iteration' is 'two'" in outcome.message
    assert '"event": "done"' in outcome.log_tail and outcome.checkpoint == "ck.pt"


def test_a_train_request_starts_the_real_engine_command(qtbot, tmp_path):
    runner = TrainingRunner()
    request = TrainRequest(
        train_json=str(tmp_path / "missing.json"),
        images=str(tmp_path),
        out=str(tmp_path / "run"),
        iterations=1,
        device="cpu",
        progress="jsonl",
    )
    with qtbot.waitSignal(runner.finished, timeout=60_000) as blocker:
        runner.start(request, workdir=tmp_path, log_path=tmp_path / "train.log")
    outcome = blocker.args[0]
    assert outcome.status is RunStatus.FAILED and outcome.exit_code == ExitCode.BAD_INPUT
    assert "missing.json" in outcome.message


def test_read_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert read_log_tail(log, 3) == "line 997\nline 998\nline 999"
    assert read_log_tail(tmp_path / "missing.log") == ""
