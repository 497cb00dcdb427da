"""``wiseedit export``: a thin wrapper over :func:`wiseedit.export.exporter.export_model`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from wiseedit.cli.common import (
    MODEL_PANEL,
    OUTPUT_PANEL,
    DebugOpt,
    DeviceOpt,
    DTypeChoice,
    JsonOpt,
    ModelOpt,
    ThreadsOpt,
    reports_errors,
    use_threads,
)
from wiseedit.cli.output import note, print_json, stderr_console

EXAMPLE = "wiseedit export --delta world.wiseedit --out world-edited"
MERGED_EXAMPLE = "wiseedit export --delta world.wiseedit --out world-merged --merged"
FORM_PANEL = "Form"

HELP = "\n\n".join([
    "Export a base model with a delta as one folder to share or serve.",
    "Self-contained (default): the base weights, tokenizer and config, the delta in wiseedit_delta/, and a "
    "modeling file; wiseedit.load(DIR) or AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True) "
    "(with wiseedit installed) give the edited model, routing included, bit for bit.",
    "--merged (WISE deltas only): all memories are merged into one and added to the edited module's weight: "
    "a plain checkpoint that transformers loads without wiseedit, but with no router. Rel and Loc of the "
    "routed and the merged model are measured first and shown side by side; the export is refused (exit 1, "
    "nothing written) when the merged Loc is below --min-loc.",
    "Both forms get a README.md model card, wiseedit_export.json (provenance and figures) and the edit log.",
    f"[bold]Examples[/bold]:\n  [cyan]{EXAMPLE}[/cyan]\n  [cyan]{MERGED_EXAMPLE}[/cyan]",
])


@reports_errors
def export_command(
    delta: Annotated[Path, typer.Option(
        "--delta", "-d", metavar="DIR", show_default=False, rich_help_panel=FORM_PANEL,
        help="The delta directory to export (written by wiseedit edit).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="DIR", show_default=False, rich_help_panel=OUTPUT_PANEL,
        help="The folder to write; it appears complete or not at all.")],
    model: ModelOpt = None,
    merged: Annotated[bool, typer.Option(
        "--merged", rich_help_panel=FORM_PANEL,
        help="Bake a WISE delta into the weights: a plain checkpoint, no wiseedit needed to load it.")] = False,
    min_loc: Annotated[float, typer.Option(
        "--min-loc", metavar="X", rich_help_panel=FORM_PANEL,
        help="With --merged: refuse (exit 1) when the merged model's Loc is below X.")] = 0.95,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=OUTPUT_PANEL,
        help="Replace an existing export at --out, and write a merged model even below --min-loc.")] = False,
    device: DeviceOpt = "auto",
    dtype: Annotated[DTypeChoice, typer.Option(
        "--dtype", metavar="DTYPE", rich_help_panel=MODEL_PANEL,
        help="auto (the checkpoint's own dtype, so the export keeps the base's size), float32, bfloat16 or "
             "float16.")] = "auto",
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    use_threads(threads)
    from wiseedit.export.exporter import export_model
    from wiseedit.export.merged import LocalityTooLow

    console = stderr_console()
    try:
        result = export_model(model, delta, out, merged=merged, force=force, min_loc=min_loc, device=device,
                              dtype=dtype, log=note(console))
    except LocalityTooLow as refused:
        console.print(metrics_table(refused.metrics.to_json()))
        if json_output:
            print_json({"written": False, "path": str(out), "form": "merged",
                        "metrics": refused.metrics.to_json(), "error": refused.for_cli()})
        raise
    document = result.to_json()
    console.print(metrics_table(document["metrics"]))
    how = ("AutoModelForCausalLM.from_pretrained(DIR)" if merged
           else "wiseedit.load(DIR), or from_pretrained(DIR, trust_remote_code=True)")
    console.print(f"exported [bold]{escape(str(result.path))}[/bold] ({result.form}, {result.delta.method}, "
                  f"{result.delta.num_edits} edit(s)); load with {escape(how)}")
    if json_output:
        print_json(document)


def metrics_table(metrics: dict) -> Table:
    """Rel and Loc of the routed and (when measured) the merged model, side by side."""
    table = Table(title="measured before writing", title_justify="left")
    table.add_column("")
    table.add_column("routed", justify="right")
    merged = metrics.get("merged")
    if merged is not None:
        table.add_column("merged", justify="right")
    for key, label in (("rel", f"Rel ({metrics['num_edits']} edits)"),
                       ("loc", f"Loc ({metrics['num_locality_probes']} probes, {metrics['locality_probes']})")):
        cells = [f"{metrics['routed'][key]:.3f}"] + ([f"{merged[key]:.3f}"] if merged is not None else [])
        table.add_row(label, *cells)
    return table
