"""The engine's command line in a child process: training with live JSON-lines progress, and evaluation.

``python -m maskrcnn_core train ... --progress jsonl`` runs in a ``QProcess``, so an out-of-memory error
or a crash ends that process, never the window, and the GUI and headless training are one code path.
Both ends speak :mod:`maskrcnn_core.protocol`: the command line is a ``TrainRequest``'s, its stdout
carries one training event per line (parsed into the protocol's typed events), and its exit code is an
``ExitCode``. Its stderr, the human-readable log, goes straight to a file in the run folder, so a crash
can be reported with its log and the log outlives the app.

Everything here is asynchronous: the GUI thread reads the few bytes that arrive and never waits on the
process (except for a bounded wait when the project closes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QIODevice, QObject, QProcess, QProcessEnvironment, QTimer, Signal

from maskrcnn_core.protocol import (
    CancelledEvent,
    CheckpointEvent,
    ErrorEvent,
    EvaluateRequest,
    ExitCode,
    FinishedEvent,
    ProtocolError,
    RunStatus,
    TrainingEvent,
    TrainRequest,
    engine_argv,
    parse_event,
)

LOG_TAIL_LINES = 40
# How long a cancelled run may take to write its last checkpoint before it is killed: an iteration of a
# large model on a CPU can take tens of seconds, and the run only stops between iterations.
CANCEL_GRACE_MS = 120_000


@dataclass(frozen=True)
class RunOutcome:
    """How a training process ended.

    ``status`` is ``FINISHED`` (``model_path`` is the final model), ``CANCELLED`` (``checkpoint`` holds
    the last state, resumable) or ``FAILED`` (``message`` says why; ``log_tail`` is the end of the log;
    ``checkpoint`` is the last one written before it failed, if any).
    """

    status: RunStatus
    exit_code: int | None
    message: str = ""
    model_path: str | None = None
    checkpoint: str | None = None
    log_tail: str = ""
    validation: dict | None = None
    losses: dict | None = None


# How much lower than the app's the CPU priority of its training and scoring processes is: on a machine
# whose every core trains, the window's thread still gets a core the moment it wakes up.
BACKGROUND_NICENESS = 10


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (reads at most its last 32 KiB)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 32_768))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _new_process(
    owner: TrainingRunner | EvaluationRunner, arguments: Sequence[str], workdir: Path, log_path: Path
) -> QProcess:
    """``python ARGUMENTS`` in ``workdir``, not started: stdout goes to ``owner._read``, stderr is appended
    to ``log_path``, and ``owner._on_finished`` / ``owner._on_error`` are connected."""
    process = QProcess(owner)
    process.setProgram(sys.executable)
    process.setArguments(list(arguments))
    process.setWorkingDirectory(str(workdir))
    env = QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONUNBUFFERED", "1")
    process.setProcessEnvironment(env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process.setStandardErrorFile(str(log_path), QIODevice.OpenModeFlag.Append)
    process.readyReadStandardOutput.connect(owner._read)
    process.finished.connect(owner._on_finished)
    process.errorOccurred.connect(owner._on_error)
    return process


class TrainingRunner(QObject):
    """One training process at a time. ``trainingEvent`` carries every training event; ``finished`` the
    outcome."""

    trainingEvent = Signal(object)  # a maskrcnn_core.protocol training event
    finished = Signal(object)  # RunOutcome

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._buffer = b""
        self._log_path: Path | None = None
        self._stray: list[str] = []  # stdout lines that were not events (shown with the log on failure)
        self._protocol_error = ""  # why the last such line was not one
        self._last: dict[type, TrainingEvent] = {}  # the latest event of each kind
        self._cancelling = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.kill)

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int:
        """The process id (0 when nothing runs)."""
        return int(self._process.processId()) if self._process is not None else 0

    def start(self, request: TrainRequest, *, workdir: Path, log_path: Path) -> None:
        """Start ``python -m maskrcnn_core train`` as ``request`` says, at background priority."""
        self.start_command(engine_argv(request.to_argv(), nice=BACKGROUND_NICENESS), workdir, log_path)

    def start_command(self, arguments: Sequence[str], workdir: Path, log_path: Path) -> None:
        """Start ``python ARGUMENTS``, a process that speaks the training protocol on its stdout."""
        if self._process is not None:
            raise RuntimeError("a training process is already running")
        self._buffer, self._stray, self._last, self._cancelling = b"", [], {}, False
        self._protocol_error = ""
        self._log_path = log_path
        self._process = _new_process(self, arguments, workdir, log_path)
        self._process.start()  # after the assignment: a failed start reports at once, to _on_error

    def cancel(self, grace_ms: int = CANCEL_GRACE_MS) -> None:
        """Ask the run to stop (SIGTERM): it writes its last checkpoint and exits, or is killed after
        ``grace_ms``."""
        if self._process is None or self._cancelling:
            return
        self._cancelling = True
        self._process.terminate()
        self._kill_timer.start(grace_ms)

    def kill(self) -> None:
        """Stop the process at once (SIGKILL): no new checkpoint; the last one written stays."""
        if self._process is not None:
            self._process.kill()

    def shutdown(self, timeout_ms: int = 15_000) -> None:
        """Cancel and wait (bounded) for the process to end: called when the project closes."""
        process = self._process
        if process is None:
            return
        self.cancel()
        if not process.waitForFinished(timeout_ms):
            process.kill()
            process.waitForFinished(2000)

    # --------------------------------------------------------------------------------------- internals
    def _read(self) -> None:
        if self._process is None:
            return
        self._buffer += self._process.readAllStandardOutput().data()
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._handle_line(line)

    def _handle_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            event = parse_event(text)
        except ProtocolError as exc:
            self._stray.append(text)
            self._protocol_error = str(exc)
            return
        self._last[type(event)] = event
        self.trainingEvent.emit(event)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            message = f"the training process could not start: {self._process.errorString()}"
            self._end(RunOutcome(RunStatus.FAILED, None, message=message))

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._process is None:
            return
        self._read()
        if self._buffer:
            self._handle_line(self._buffer)
            self._buffer = b""
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._end(self._outcome(None if crashed else exit_code))

    def _outcome(self, code: int | None) -> RunOutcome:
        finished = self._last.get(FinishedEvent)
        cancelled = self._last.get(CancelledEvent)
        error = self._last.get(ErrorEvent)
        last_checkpoint = self._last.get(CheckpointEvent)
        checkpoint = last_checkpoint.path if isinstance(last_checkpoint, CheckpointEvent) else None
        log = read_log_tail(self._log_path) if self._log_path else ""
        if self._stray:
            log = "\n".join([*self._stray[-10:], log]).strip()
        if code == ExitCode.OK and isinstance(finished, FinishedEvent):
            return RunOutcome(
                RunStatus.FINISHED,
                code,
                model_path=finished.model,
                checkpoint=checkpoint,
                validation=finished.validation,
                losses=finished.losses,
            )
        if code == ExitCode.CANCELLED:
            if isinstance(cancelled, CancelledEvent):
                checkpoint = cancelled.checkpoint
            return RunOutcome(RunStatus.CANCELLED, code, checkpoint=checkpoint, log_tail=log)
        if code is None:
            message = (
                "the training process was stopped" if self._cancelling else "the training process crashed"
            ) + " (killed, or it ran out of memory)"
        elif isinstance(error, ErrorEvent):
            message = error.message
        elif code == ExitCode.OK:  # it said it succeeded, but never said where its model is
            message = "the training process ended without reporting its model"
            message += f" ({self._protocol_error})" if self._protocol_error else ""
        else:
            last_line = log.splitlines()[-1] if log else ""
            message = f"the training process exited with code {code}"
            message += f": {last_line}" if last_line else ""
        return RunOutcome(RunStatus.FAILED, code, message=message, checkpoint=checkpoint, log_tail=log)

    def _end(self, outcome: RunOutcome) -> None:
        self._kill_timer.stop()
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        self.finished.emit(outcome)


class EvaluationRunner(QObject):
    """``python -m maskrcnn_core evaluate --json`` in a child process; ``finished(metrics, error)``.

    ``metrics`` is the evaluator's dict (``{"segm": {"ap": ..., "per_class_ap": [...]}, "bbox": ...}``),
    empty when it failed, and ``error`` then says why.
    """

    finished = Signal(dict, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._log_path: Path | None = None
        self._stdout = b""

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, request: EvaluateRequest, *, workdir: Path, log_path: Path) -> None:
        """Start ``python -m maskrcnn_core evaluate`` as ``request`` says, at background priority."""
        self.start_command(engine_argv(request.to_argv(), nice=BACKGROUND_NICENESS), workdir, log_path)

    def start_command(self, arguments: Sequence[str], workdir: Path, log_path: Path) -> None:
        """Start ``python ARGUMENTS``, a process that prints the evaluator's metrics as JSON."""
        if self._process is not None:
            raise RuntimeError("an evaluation process is already running")
        self._stdout = b""
        self._log_path = log_path
        self._process = _new_process(self, arguments, workdir, log_path)
        self._process.start()  # after the assignment: a failed start reports at once, to _on_error

    def shutdown(self, timeout_ms: int = 5000) -> None:
        process = self._process
        if process is None:
            return
        process.kill()  # nothing to keep: an evaluation is simply run again
        process.waitForFinished(timeout_ms)

    def _read(self) -> None:
        if self._process is not None:
            self._stdout += self._process.readAllStandardOutput().data()

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            self._end({}, f"the evaluation process could not start: {self._process.errorString()}")

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        if self._process is None:
            return
        self._read()
        if exit_status == QProcess.ExitStatus.NormalExit and exit_code == ExitCode.OK:
            try:
                metrics = json.loads(self._stdout.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._end({}, f"the evaluation printed something that is not JSON: {exc}")
                return
            self._end(metrics, "")
            return
        log = read_log_tail(self._log_path, 5) if self._log_path else ""
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        reason = "crashed" if crashed else f"exited with code {exit_code}"
        self._end({}, f"the evaluation {reason}" + (f": {log.splitlines()[-1]}" if log else ""))

    def _end(self, metrics: dict, error: str) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        self.finished.emit(metrics, error)
