"""Progress as plain lines, for a stderr that is not a terminal (CI logs, ``2> file``).

A rich bar redraws itself in place; without a terminal it cannot, and shows up only when the work is
over. :class:`ProgressLines` takes the same calls as the few ``rich.progress.Progress`` methods the
CLI uses, and prints one line per task, ``what n/N elapsed H:MM:SS ETA H:MM:SS``: when the task
starts, then at most every `interval` seconds, and when it ends (at its total, or when the display
stops), so a long run says where it is at a steady pace and a short one prints two lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rich.console import Console

INTERVAL_SECONDS = 30.0


def clock_text(seconds: float) -> str:
    """``H:MM:SS``, as rich's columns show times."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict
    started: float  # clock time of the first report
    first: float  # `completed` then: the ETA counts only the work done since (a resumed run)
    printed_at: float | None = None
    printed: tuple | None = field(default=None)  # (completed, total, description) last printed


class ProgressLines:
    """Plain progress lines on `console`; `clock` (seconds) is replaceable for tests."""

    def __init__(self, console: Console, interval: float = INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.console, self.interval, self.clock = console, interval, clock
        self.tasks: list[_Task] = []

    def start(self) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        now = self.clock()
        self.tasks.append(_Task(description, total, completed, fields, now, completed))
        self._maybe_print(self.tasks[-1], now, force=True)
        return len(self.tasks) - 1

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, **fields) -> None:
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        task.fields.update(fields)
        done = task.total is not None and task.completed >= task.total
        self._maybe_print(task, self.clock(), force=done)

    def stop(self) -> None:
        """Print the last state of every task that moved since its last line."""
        now = self.clock()
        for task in self.tasks:
            self._maybe_print(task, now, force=True)

    def _maybe_print(self, task: _Task, now: float, force: bool) -> None:
        state = (task.completed, task.total, task.description)
        if state == task.printed:
            return
        if not force and task.printed_at is not None and now - task.printed_at < self.interval:
            return
        task.printed_at, task.printed = now, state
        self.console.print(self.line(task, now), soft_wrap=True, highlight=False)

    def line(self, task: _Task, now: float) -> str:
        """``editing 3/10 loss 0.1234 elapsed 0:00:12 ETA 0:00:28`` (markup in `description` kept)."""
        elapsed = now - task.started
        done = task.completed - task.first
        if task.total is None:
            eta = "?"
        elif task.completed >= task.total:
            eta = clock_text(0)
        elif done > 0 and elapsed > 0:
            eta = clock_text(elapsed / done * (task.total - task.completed))
        else:
            eta = "?"
        count = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
        extra = "".join(f" {key} {value}" for key, value in task.fields.items())
        return f"{task.description} {count}{extra} elapsed {clock_text(elapsed)} ETA {eta}"
