"""How responsive the GUI thread is: a timer probe, and where the thread was when it stalled.

A ``QTimer`` ticks on the GUI thread; a stall is how late a tick comes. A watchdog thread wakes every few
milliseconds and, while the GUI thread is late by more than ``sample_after_s``, records the GUI thread's
Python stack and where every other thread is, so a stall report says *what* the thread was doing (a
paint, a store write, a garbage collection, waiting for the GIL a model loader holds) instead of only how
long it took. Used by the tests and benchmarks that hold the GUI to its
stall budget.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

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

    def describe(self) -> str:
        gc_ms = self.gc_seconds * 1000
        busy = "?" if self.machine_busy is None else f"{self.machine_busy:.0%}"
        lines = [
            f"{self.seconds * 1000:.0f} ms at t={self.at:.1f} s: GUI thread on a CPU "
            f"{self.gui_cpu_seconds * 1000:.0f} ms, garbage collection {gc_ms:.0f} ms, machine busy {busy}"
        ]
        for stack, count in self.stacks.most_common(3):
            lines.append(f"  seen {count}x:\n" + "\n".join("    " + s for s in stack.splitlines()))
        return "\n".join(lines)


class StallProbe(QObject):
    """Ticks every ``interval_ms`` on the thread it lives on (the GUI thread) and keeps the worst stalls."""

    def __init__(self, interval_ms: int = 10, sample_after_s: float = 0.03, keep: int = 5) -> None:
        super().__init__()
        self.interval_s = interval_ms / 1000
        self.sample_after_s = sample_after_s
        self.keep = keep
        self.ticks = 0
        self.stalls: list[Stall] = []
        self._gui_thread_id = threading.get_ident()
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
        """The longest stall so far, in seconds (0 when every tick came on time)."""
        return max((s.seconds for s in self.stalls), default=0.0)

    def stop(self) -> float:
        """Stops ticking and watching; returns the worst stall in seconds."""
        self._timer.stop()
        self._stop.set()
        self._watchdog.join()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        return self.worst

    def report(self) -> str:
        return "\n".join(s.describe() for s in sorted(self.stalls, key=lambda s: -s.seconds))

    # --- GUI thread -------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now, cpu, machine = time.monotonic(), time.thread_time(), _machine_cpu_times()
        late = now - self._last - self.interval_s
        self.ticks += 1
        with self._lock:
            stacks, self._current_stacks = self._current_stacks, Counter()
            gc_seconds, self._gc_time = self._gc_time, 0.0
        if late > 0.001 and (len(self.stalls) < self.keep or late > min(s.seconds for s in self.stalls)):
            busy = None
            if machine is not None and self._last_machine is not None and machine[1] > self._last_machine[1]:
                busy = (machine[0] - self._last_machine[0]) / (machine[1] - self._last_machine[1])
            stall = Stall(late, self._last - self._started, stacks, gc_seconds, cpu - self._last_cpu, busy)
            self.stalls.append(stall)
            self.stalls.sort(key=lambda s: -s.seconds)
            del self.stalls[self.keep :]
        self._last, self._last_cpu, self._last_machine = now, cpu, machine

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
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in frames.items():
                if ident != me:
                    calls = reversed(traceback.extract_stack(frame, limit=4))
                    stack += f"\n[{names.get(ident, ident)}] " + " <- ".join(
                        f"{c.name}:{c.lineno}" for c in calls
                    )
            with self._lock:
                self._current_stacks[stack] += 1


def _machine_cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; ``None`` where there is no such file."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)
