"""How responsive the GUI thread is: a timer probe, and where the thread was when it stalled.

A ``QTimer`` ticks on the GUI thread; a stall is how late a tick comes. A watchdog thread wakes every few
milliseconds and, while the GUI thread is late by more than ``sample_after_s``, records the GUI thread's
Python stack and where every other thread is, so a stall report says *what* the thread was doing (a
paint, a store write, a garbage collection, waiting for the GIL a model loader holds) instead of only how
long it took. Used by the tests and benchmarks that hold the GUI to its stall budget.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from PySide6.QtCore import QObject, Qt, QTimer


@dataclass
class Stall:
    """One late tick: how late, when (seconds after the probe started) and the stacks seen meanwhile."""

    seconds: float
    at: float
    stacks: Counter[str] = field(default_factory=Counter)
    gc_seconds: float = 0.0
    gui_cpu_seconds: float = 0.0  # CPU time the GUI thread itself used meanwhile
    machine_busy: float | None = None  # fraction of all CPUs busy meanwhile (Linux), None if unknown
    gui_runqueue_seconds: float | None = None  # time the GUI thread was ready but had no CPU (Linux)
    stolen_seconds: float = 0.0  # CPU time the hypervisor gave to other machines meanwhile, all CPUs

    @property
    def unstolen_seconds(self) -> float:
        """The stall less the time the hypervisor took: what the app and this machine's load caused."""
        return max(0.0, self.seconds - self.stolen_seconds)

    def describe(self) -> str:
        gc_ms = self.gc_seconds * 1000
        busy = "?" if self.machine_busy is None else f"{self.machine_busy:.0%}"
        queued = "?" if self.gui_runqueue_seconds is None else f"{self.gui_runqueue_seconds * 1000:.0f} ms"
        lines = [
            f"{self.seconds * 1000:.0f} ms at t={self.at:.1f} s: GUI thread on a CPU "
            f"{self.gui_cpu_seconds * 1000:.0f} ms, ready but without a CPU {queued}, "
            f"garbage collection {gc_ms:.0f} ms, machine busy {busy}, "
            f"taken by the hypervisor {self.stolen_seconds * 1000:.0f} ms"
        ]
        for stack, count in self.stacks.most_common(3):
            lines.append(f"  seen {count}x:\n" + "\n".join("    " + s for s in stack.splitlines()))
        return "\n".join(lines)


class StallProbe(QObject):
    """Ticks every ``interval_ms`` on the thread it lives on (the GUI thread) and keeps the worst stalls.

    On a virtual machine the hypervisor sometimes runs other machines on our CPUs for tens of milliseconds
    (Linux counts it as steal time); a timer cannot fire then, whatever the app does. The stalls are kept
    ranked by their length less that stolen time, :attr:`worst_unstolen`; :attr:`worst` is the plain
    longest stall.
    """

    def __init__(self, interval_ms: int = 10, sample_after_s: float = 0.03, keep: int = 5) -> None:
        super().__init__()
        self.interval_s = interval_ms / 1000
        self.sample_after_s = sample_after_s
        self.keep = keep
        self.stalls: list[Stall] = []
        self.longest: Stall | None = None  # kept too when the hypervisor took most of it
        self._gui_thread_id = threading.get_ident()
        self._gui_task = f"/proc/self/task/{threading.get_native_id()}"
        self._last_queued = _read_runqueue_seconds(self._gui_task)
        self._started = self._last = time.monotonic()
        self._last_cpu = time.thread_time()
        self._last_machine = _machine_cpu_times()
        self._current_stacks: Counter[str] = Counter()
        self._gc_time = 0.0
        self._gc_began: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        gc.callbacks.append(self._on_gc)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._timer.start(interval_ms)
        self._watchdog.start()

    @property
    def worst(self) -> float:
        """The longest stall, in seconds (0 when every tick came on time)."""
        return self.longest.seconds if self.longest is not None else 0.0

    @property
    def worst_unstolen(self) -> float:
        """The longest stall less the time the hypervisor took meanwhile, in seconds."""
        return max((s.unstolen_seconds for s in self.stalls), default=0.0)

    def stop(self) -> float:
        """Stops ticking and watching; returns the worst stall in seconds."""
        self._timer.stop()
        self._stop.set()
        self._watchdog.join()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        return self.worst

    def report(self) -> str:
        """The kept stalls, worst (less stolen time) first, then the longest if it is not among them; each
        with the stacks seen while it lasted."""
        shown = list(self.stalls)  # kept sorted by _tick
        if self.longest is not None and all(kept is not self.longest for kept in shown):
            shown.append(self.longest)
        return "\n".join(s.describe() for s in shown)

    # --- GUI thread -------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now, cpu, machine = time.monotonic(), time.thread_time(), _machine_cpu_times()
        queued = _read_runqueue_seconds(self._gui_task)
        late = now - self._last - self.interval_s
        with self._lock:
            stacks, self._current_stacks = self._current_stacks, Counter()
            gc_seconds, self._gc_time = self._gc_time, 0.0
        if late > 0.001:
            busy, stolen, before = None, 0.0, self._last_machine
            if machine is not None and before is not None:
                stolen = (machine.steal - before.steal) / _CLOCK_TICKS
                if machine.total > before.total:
                    busy = (machine.busy - before.busy) / (machine.total - before.total)
            waited = None if queued is None or self._last_queued is None else queued - self._last_queued
            at = self._last - self._started
            stall = Stall(late, at, stacks, gc_seconds, cpu - self._last_cpu, busy, waited, stolen)
            if self.longest is None or late > self.longest.seconds:
                self.longest = stall
            if len(self.stalls) < self.keep or stall.unstolen_seconds > self.stalls[-1].unstolen_seconds:
                self.stalls.append(stall)
                self.stalls.sort(key=lambda s: -s.unstolen_seconds)
                del self.stalls[self.keep :]
        self._last, self._last_cpu, self._last_machine, self._last_queued = now, cpu, machine, queued

    def _on_gc(self, phase: str, _info: dict) -> None:
        if threading.get_ident() != self._gui_thread_id:
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        elif self._gc_began is not None:
            with self._lock:
                self._gc_time += time.perf_counter() - self._gc_began
            self._gc_began = None

    # --- watchdog thread --------------------------------------------------------------------------------
    def _watch(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(0.005):
            if time.monotonic() - self._last - self.interval_s < self.sample_after_s:
                continue
            frames = sys._current_frames()
            gui_frame = frames.pop(self._gui_thread_id, None)
            if gui_frame is None:
                continue
            # The GUI thread's own stack, then one line per other thread: a stall is often another
            # thread holding the GIL while the GUI thread waits for it.
            stack = "".join(traceback.format_stack(gui_frame, limit=12)[-6:]).rstrip()
            syscall = _current_syscall(self._gui_task)
            if syscall is not None:
                stack += f"\n  (GUI thread at that moment: {syscall})"
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in frames.items():
                if ident != me:
                    calls = reversed(traceback.extract_stack(frame, limit=4))
                    stack += f"\n[{names.get(ident, ident)}] " + " <- ".join(
                        f"{c.name}:{c.lineno}" for c in calls
                    )
            with self._lock:
                self._current_stacks[stack] += 1


# x86-64 numbers of the system calls a blocked GUI thread is usually in.
_SYSCALL_NAMES = {
    "0": "read",
    "1": "write",
    "7": "poll (idle in the event loop)",
    "74": "fsync (waiting for the disk)",
    "75": "fdatasync (waiting for the disk)",
    "202": "futex (waiting for a lock: the GIL or a mutex)",
    "271": "ppoll (idle in the event loop)",
    "running": "running, in no system call",
}


def _current_syscall(task: str) -> str | None:
    """The system call the thread at ``task`` (a ``/proc`` path) is in, by name where known (Linux).

    It tells waiting for the GIL (futex) from idling in the event loop (poll) from waiting for the disk.
    """
    try:
        with open(f"{task}/syscall", encoding="ascii") as f:
            number = f.read().split(" ", 1)[0].strip()
    except OSError:
        return None
    return _SYSCALL_NAMES.get(number, f"system call {number}")


def _read_runqueue_seconds(task: str) -> float | None:
    """How long the thread at ``task`` has waited, ready to run, for a CPU in all (Linux schedstat)."""
    try:
        with open(f"{task}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class _CpuTimes(NamedTuple):
    """Clock ticks of all CPUs together since boot."""

    busy: int
    total: int
    steal: int  # ticks a virtual machine's CPUs were ready to run but the hypervisor ran something else


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_cpu_times() -> _CpuTimes | None:
    """All CPUs' clock ticks from ``/proc/stat``; ``None`` where there is no such file."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return _CpuTimes(sum(fields) - idle, sum(fields), steal)
