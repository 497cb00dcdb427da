"""How results reach the user: human output (tables, progress, notes) on stderr through rich, and the
single ``--json`` document on stdout, so that ``wiseedit ... --json | jq`` always gets clean JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from wiseedit.cli.progress_lines import ProgressLines

TABLE_ROWS = 50  # longer runs print this many rows of the before/after table; --json has them all
OK, FAIL = "[green]✓[/green]", "[red]✗[/red]"


def stderr_console() -> Console:
    """The console for everything that is not the JSON document (created per command, never global)."""
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """The one machine-readable document of a command, on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def note(console: Console):
    """A log function for the library's ``log=`` argument: dim one-line notes on stderr."""

    def log(message: str) -> None:
        # soft_wrap: a note is one line, its paths unbroken, however narrow the terminal
        console.print(f"[dim]{escape(message)}[/dim]", soft_wrap=True)

    return log


class LazyProgress:
    """A rich progress display drawn from the first report on, and stopped when the ``with`` block ends.

    Use as a context manager and pass the instance as the library's ``progress=``: nothing is drawn
    while the model loads, or when a run fails before its first report. Subclasses are called with the
    library's reports and call :meth:`begin` first, which is True exactly once (create the tasks then).
    Where stderr is not an interactive terminal (CI, a log file), bars would only appear at the end:
    plain :class:`~wiseedit.cli.progress_lines.ProgressLines` are printed instead.
    """

    def __init__(self, console: Console, *columns):
        if console.is_interactive:
            self.progress = Progress(*columns, console=console)
        else:
            self.progress = ProgressLines(console)
        self.started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.progress.stop()

    def begin(self) -> bool:
        """Start drawing at the first report; True then, False afterwards."""
        if self.started:
            return False
        self.progress.start()
        self.started = True
        return True


def timing_columns(*fields) -> tuple:
    """Bar, M/N, then `fields` (e.g. a loss column), elapsed and ETA: the columns every wiseedit
    progress display ends with."""
    return (BarColumn(), MofNCompleteColumn(), *fields, TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn())


class EditProgress(LazyProgress):
    """One bar (description, bar, M/N, elapsed, ETA) fed by a method's progress callback ``(done, total)``;
    the library calls it with 0 just before the first edit."""

    def __init__(self, console: Console, description: str = "editing"):
        super().__init__(console, TextColumn("{task.description}"), *timing_columns())
        self.description = description

    def __call__(self, done: int, total: int) -> None:
        if self.begin():
            self.task = self.progress.add_task(self.description, total=total)
        self.progress.update(self.task, completed=done, total=total)


def edit_table(results: list[dict], limit: int = TABLE_ROWS) -> Table:
    """Before -> after, one row per edit (`results` as in ``EditResult.to_json()["results"]``)."""
    table = Table(title="before → after", title_justify="left")
    for column in ("id", "prompt", "target", "before", "after"):
        table.add_column(column, overflow="fold")
    table.add_column("", justify="center")
    for row in results[:limit]:
        table.add_row(*(escape(str(row[k])) for k in ("id", "prompt", "target", "before", "after")),
                      OK if row["recalled"] else FAIL)
    if len(results) > limit:
        table.caption = f"first {limit} of {len(results)} edits; --json lists them all"
    return table


def facts_table(facts: list[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key/value table (what a delta holds, what a model is); values that are rich
    renderables (e.g. a ``Text`` with colour) are shown as they are, everything else verbatim."""
    table = Table(show_header=False, title=title, title_justify="left", box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in facts:
        table.add_row(key, value if isinstance(value, Text) else escape(str(value)))
    return table


def generations_table(rows: list[dict], compare: bool) -> Table:
    """Prompt and greedy output, with the base model's beside it when comparing."""
    table = Table(title="greedy continuations", title_justify="left")
    table.add_column("prompt", overflow="fold")
    table.add_column("edited" if compare else "output", overflow="fold")
    if compare:
        table.add_column("base", overflow="fold")
    for row in rows:
        cells = [row["prompt"], row["output"]] + ([row["base_output"]] if compare else [])
        table.add_row(*(escape(c) for c in cells))
    return table


class StepProgress(LazyProgress):
    """A bar over training steps (description, bar, M/N, running loss, elapsed, ETA), fed by the
    library's ``TrainProgress`` reports; it starts at the first report, at the step a run resumes from,
    so the ETA counts only the steps left."""

    def __init__(self, console: Console, description: str = "meta-training"):
        super().__init__(console, TextColumn("{task.description}"),
                         *timing_columns(TextColumn("loss {task.fields[loss]}")))
        self.description = description

    def __call__(self, report) -> None:
        loss = "-" if report.running_loss is None else f"{report.running_loss:.4f}"
        if self.begin():
            self.task = self.progress.add_task(self.description, total=report.steps, completed=report.step,
                                               loss=loss)
        self.progress.update(self.task, completed=report.step, total=report.steps, loss=loss)
