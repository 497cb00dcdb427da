"""What ``wiseedit eval`` shows on stderr: a progress bar over blocks and edits, and the results table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import TextColumn
from rich.table import Table

from wiseedit.cli.output import LazyProgress, timing_columns

# (row key, column header); the suite-specific ones appear only when some row has a value
COLUMNS = (("rel", "Rel"), ("gen", "Gen"), ("loc", "Loc"), ("port", "Port"), ("rel_generated", "Rel(gen)"),
           ("ppl", "PPL↓"), ("ood", "OOD"))
OPTIONAL = ("port", "ppl", "ood")


class EvalProgressBar(LazyProgress):
    """Two bars fed by the runner's progress callback: blocks done, and edits applied with an ETA.

    Use as a context manager and pass the instance as ``progress=``; nothing is drawn before the first
    block starts (the model loads quietly)."""

    def __init__(self, console: Console):
        super().__init__(console, TextColumn("{task.description:<28}"), *timing_columns())

    def __call__(self, update) -> None:
        if self.begin():
            self.blocks = self.progress.add_task("blocks", total=update.blocks_total)
            self.edits = self.progress.add_task("edits", total=update.edits_total)
        self.progress.update(self.blocks, completed=update.blocks_done, description=escape(update.label))
        self.progress.update(self.edits, completed=update.edits_done)


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def eval_table(rows: list[dict], title: str) -> Table:
    """One row per (method, T): the figures, those per probe kind (KnowEdit's ``port:Reasoning``, ...)
    when there are any, and the editing time per edit."""
    shown = [(k, h) for k, h in COLUMNS if k not in OPTIONAL or any(r.get(k) is not None for r in rows)]
    kinds = list(dict.fromkeys(k for r in rows for k in r if ":" in k))  # "port:Reasoning", in first-seen order
    shown += [(k, k.split(":")[0].capitalize() + " " + k.split(":", 1)[1]) for k in kinds]
    table = Table(title=title, title_justify="left")
    for header in ("method", "T", "blocks"):
        table.add_column(header, justify="left" if header == "method" else "right")
    for _, header in shown:
        table.add_column(header, justify="right")
    table.add_column("s/edit", justify="right")
    for row in rows:
        seconds = row.get("seconds_per_edit")
        table.add_row(escape(row["method"]), str(row["T"]), str(row["blocks"]),
                      *(_cell(row.get(k)) for k, _ in shown), "—" if seconds is None else f"{seconds:.3g}")
    return table
