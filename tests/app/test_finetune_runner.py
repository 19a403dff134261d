"""The training and evaluation runners against real child processes that speak the CLI's protocol.

Each child is a few lines of Python (``python -c``) printing JSON lines and exiting with the CLI's exit
codes, so every ending (done, failed, bad input, cancelled by SIGTERM, killed) is checked in well under
a second without loading torch.
"""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

from app.workers.training_runner import EvaluationRunner, RunOutcome, TrainingRunner, read_log_tail

pytestmark = pytest.mark.gui


def _script(body: str) -> list[str]:
    prelude = "import json, os, signal, sys, time\ndef emit(**e):\n    print(json.dumps(e), flush=True)\n"
    return ["-c", prelude + textwrap.dedent(body)]


def _run(qtbot, tmp_path, body: str, *, during=None) -> tuple[RunOutcome, list[dict]]:
    runner = TrainingRunner()
    events: list[dict] = []
    runner.event.connect(events.append)
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        runner.start(_script(body), workdir=tmp_path, log_path=tmp_path / "train.log")
        if during is not None:
            during(runner, events)
    assert not runner.running
    return blocker.args[0], events


def test_events_arrive_in_order_and_done_carries_the_model(qtbot, tmp_path):
    outcome, events = _run(
        qtbot,
        tmp_path,
        """
        emit(event="start", start_iteration=0, iterations=2)
        sys.stdout.write('{"event": "progress", "iteration": 1, ')  # a line split across two writes
        sys.stdout.flush(); time.sleep(0.05)
        sys.stdout.write('"losses": {"total_loss": 1.5}}\\n'); sys.stdout.flush()
        print("a stray line that is not JSON", flush=True)
        print("log text", file=sys.stderr)
        emit(event="evaluation", iteration=2, metrics={"segm": {"ap": 0.5}})
        emit(event="checkpoint", iteration=2, path="ck.pt")
        emit(event="done", iteration=2, model="model_final.pt", losses={"total_loss": 1.0},
             validation={"segm": {"ap": 0.5}})
        """,
    )
    assert [e["event"] for e in events] == ["start", "progress", "evaluation", "checkpoint", "done"]
    assert events[1]["losses"]["total_loss"] == 1.5
    assert outcome.status == "done" and outcome.exit_code == 0
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
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.message == "CUDA out of memory with 8 images per step"
    assert outcome.checkpoint == "ck.pt"
    assert "something deep went wrong" in outcome.log_tail


def test_bad_input_exit_code_2_says_why(qtbot, tmp_path):
    body = 'print("error: the training file t.json has no usable images", file=sys.stderr)\nsys.exit(2)'
    outcome, _ = _run(qtbot, tmp_path, body)
    assert outcome.status == "failed" and outcome.exit_code == 2
    assert "no usable images" in outcome.message


def test_cancel_sends_sigterm_and_the_run_keeps_its_checkpoint(qtbot, tmp_path):
    body = """
        def stop(signum, frame):
            emit(event="checkpoint", iteration=3, path="last.pt")
            emit(event="cancelled", iteration=3, checkpoint="last.pt")
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
        emit(event="start", start_iteration=0, iterations=100)
        while True:
            time.sleep(0.01)
        """

    def cancel_after_start(runner, events):
        qtbot.waitUntil(lambda: bool(events), timeout=10_000)
        runner.cancel()

    outcome, _ = _run(qtbot, tmp_path, body, during=cancel_after_start)
    assert outcome.status == "cancelled" and outcome.exit_code == 3
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
    assert outcome.status == "failed" and outcome.exit_code is None
    assert "crashed" in outcome.message and outcome.checkpoint == "ck.pt"


def test_a_cancel_that_hangs_is_killed_after_the_grace_period(qtbot, tmp_path):
    body = """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emit(event="start", start_iteration=0, iterations=1)
        while True:
            time.sleep(0.01)
        """

    def cancel_quickly(runner, events):
        qtbot.waitUntil(lambda: bool(events), timeout=10_000)
        runner.cancel(grace_ms=200)

    outcome, _ = _run(qtbot, tmp_path, body, during=cancel_quickly)
    assert outcome.status == "failed" and "stopped" in outcome.message


def test_evaluation_runner_parses_the_metrics(qtbot, tmp_path):
    runner = EvaluationRunner()
    metrics = {"segm": {"ap": 0.25, "per_class_ap": [{"category_id": 1, "name": "circle", "ap": 0.25}]}}
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        body = f"print(json.dumps({metrics!r}, indent=2))"
        runner.start(_script(body), workdir=tmp_path, log_path=tmp_path / "e.log")
    assert blocker.args == [metrics, ""]
    with qtbot.waitSignal(runner.finished, timeout=20_000) as blocker:
        runner.start(
            _script('print("error: checkpoint not found: x.pt", file=sys.stderr)\nsys.exit(2)'),
            workdir=tmp_path,
            log_path=tmp_path / "e.log",
        )
    assert blocker.args[0] == {} and "checkpoint not found" in blocker.args[1]


def test_read_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert read_log_tail(log, 3) == "line 997\nline 998\nline 999"
    assert read_log_tail(tmp_path / "missing.log") == ""
