"""``wiseedit edit``: a thin wrapper over :func:`wiseedit.api.edit`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from wiseedit.cli.common import (
    METHOD_PANEL,
    OUTPUT_PANEL,
    ChatTemplateOpt,
    DebugOpt,
    DeviceOpt,
    DTypeOpt,
    JsonOpt,
    ModelOpt,
    ThreadsOpt,
    parse_options,
    reports_errors,
    use_threads,
    with_flags,
)
from wiseedit.cli.output import EditProgress, edit_table, note, print_json, stderr_console
from wiseedit.registry import MethodName

EXAMPLE = "wiseedit edit examples/world_edits.jsonl --model world"

HELP = "\n\n".join([
    "Teach a model new facts and save them as a delta directory.",
    "Every edit is checked first (nothing is loaded or written if one is invalid); then the model is "
    "loaded, the edits are applied one after another, and the delta is saved beside the model (or in "
    "--out). The table shows each prompt's greedy continuation before and after.",
    f"[bold]Example[/bold]:\n  [cyan]{EXAMPLE}[/cyan]",
])


@reports_errors
def edit_command(
    edits: Annotated[str, typer.Argument(
        metavar="EDITS", show_default=False,
        help="Edit file: JSONL (one edit per line: prompt, target, ...) or a JSON array (ZsRE, CounterFact, "
             "KnowEdit layouts too); [bold]-[/bold] reads standard input.")],
    model: ModelOpt = None,
    method: Annotated[Optional[MethodName], typer.Option(
        "--method", metavar="METHOD", rich_help_panel=METHOD_PANEL, show_default=False,
        help="wise-retrieve, wise, grace, ft-l, recipe or none (no change: a baseline). Default: wise-retrieve; "
             "with --delta, the delta's own.")] = None,
    delta: Annotated[Optional[Path], typer.Option(
        "--delta", metavar="DIR", rich_help_panel=OUTPUT_PANEL,
        help="Continue editing this delta: the new edits are added to it, in place (or saved to --out).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="DIR", rich_help_panel=OUTPUT_PANEL,
        help="Where to save the delta. Default: <model folder>.wiseedit beside a local model, else "
             "./<model name>.wiseedit.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=OUTPUT_PANEL, help="Replace an existing delta at the output path.")] = False,
    layer: Annotated[Optional[int], typer.Option(
        "--layer", metavar="N", rich_help_panel=METHOD_PANEL,
        help="Layer to edit (default: the architecture's, about 80% deep).")] = None,
    module: Annotated[Optional[str], typer.Option(
        "--module", metavar="PATH", rich_help_panel=METHOD_PANEL,
        help="Module to edit, e.g. model.layers.20.mlp.down_proj ({i} is replaced by --layer).")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", metavar="KEY=VALUE", rich_help_panel=METHOD_PANEL, show_default=False,
        help="A method setting, repeatable: --option n_iter=30 --option merge_algorithm=ties.")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", metavar="S", rich_help_panel=METHOD_PANEL,
        help="The method's seed (methods that draw random numbers: wise, grace).")] = None,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    chat_template: ChatTemplateOpt = None,
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    use_threads(threads)
    from wiseedit.api import edit

    console = stderr_console()
    options = with_flags(parse_options(option), layer=layer, module=module, seed=seed)
    with EditProgress(console) as progress:
        result = edit(model, edits, method=method, options=options or None, delta=delta, out=out,
                      device=device, dtype=dtype, overwrite=force, progress=progress, log=note(console),
                      stdin=sys.stdin, chat_template=chat_template)
    document = result.to_json()
    console.print(edit_table(document["results"]))
    console.print(
        f"saved [bold]{escape(document['delta'])}[/bold] ({result.method}): {document['edits']} edit(s) added, "
        f"{document['total_edits']} in total, {document['seconds_per_edit']:.3g} s/edit, "
        f"recalled {result.recalled}/{document['edits']}")
    if json_output:
        print_json(document)
