"""``wiseedit merge-shards``: a thin wrapper over :func:`wiseedit.api.merge_shards`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from wiseedit.cli.common import (
    DebugOpt,
    DeviceOpt,
    DTypeOpt,
    JsonOpt,
    ModelOpt,
    ThreadsOpt,
    reports_errors,
    use_threads,
)
from wiseedit.cli.output import note, print_json, stderr_console
from wiseedit.wise.config import MergeAlgorithm

EXAMPLE = "wiseedit merge-shards world.wiseedit --algorithm ties"

HELP = "\n\n".join([
    "Merge a WISE delta's pending shards and its current one (if it holds edits) now, instead of "
    "waiting for the next merge_freq edits.",
    "WISE-Merge folds them into its consolidated memory, WISE-Retrieve into one more memory; the next "
    "edit starts a new shard. The delta is rewritten in place, atomically; with no shard holding "
    "unmerged edits, nothing is written.",
    f"[bold]Example[/bold]:\n  [cyan]{EXAMPLE}[/cyan]",
])


@reports_errors
def merge_command(
    delta: Annotated[Path, typer.Argument(
        metavar="DELTA", show_default=False, help="The WISE delta directory (written by wiseedit edit).")],
    algorithm: Annotated[Optional[MergeAlgorithm], typer.Option(
        "--algorithm", metavar="NAME", show_default=False,
        help="ties, linear or dare. Default: the delta's merge_algorithm setting.")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    use_threads(threads)
    from wiseedit.api import merge_shards

    console = stderr_console()
    result = merge_shards(delta, model=model, algorithm=algorithm, device=device, dtype=dtype,
                          log=note(console))
    if result.merged == 0:
        console.print(f"nothing to merge: {escape(str(result.delta.path))} has no unmerged shard")
    else:
        console.print(f"merged {result.merged} shard(s) into [bold]{escape(str(result.delta.path))}[/bold]")
    if json_output:
        print_json(result.to_json())
