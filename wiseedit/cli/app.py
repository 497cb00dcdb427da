"""The ``wiseedit`` command: one Typer app, one module per subcommand, each a thin wrapper over the
library (:mod:`wiseedit.api`). Exit codes: 0 ok, 1 a failed check, 2 bad usage or input, 3 a runtime
failure, 130 interrupted, 141 stdout's reader gone, 143 terminated (see
:func:`wiseedit.cli.common.reports_errors`)."""

from __future__ import annotations

import signal
from typing import Annotated, Optional

import typer

from wiseedit.cli import edit_cmd, eval_cmd, export_cmd, load_cmd, merge_cmd, train_recipe_cmd
from wiseedit.cli.common import raise_terminated

EDITING_PANEL = "Editing"
EVALUATING_PANEL = "Evaluating"
USING_PANEL = "Using an edited model"

# Typer's rich mode keeps single newlines, so each paragraph is one string.
HELP = "\n\n".join([
    "Lifelong knowledge editing for Hugging Face causal LMs: WISE, RECIPE and baselines.",
    "Edits are read from JSONL, applied to a base model, and saved as a small delta directory (config, "
    "safetensors, an audit log of the edits) that loads only on the base it was made on.",
    f"[bold]Example[/bold]:\n  [cyan]{edit_cmd.EXAMPLE}[/cyan]",
])


def _print_version(value: bool) -> None:
    if value:
        from wiseedit import __version__

        typer.echo(f"wiseedit {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    pass


def build_app() -> typer.Typer:
    """The Typer application (built by a function so tests and embedders get a fresh one)."""
    app = typer.Typer(name="wiseedit", help=HELP, rich_markup_mode="rich", no_args_is_help=True,
                      add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(_root)
    app.command("edit", help=edit_cmd.HELP, rich_help_panel=EDITING_PANEL,
                short_help="Teach a model new facts; save them as a delta.")(edit_cmd.edit_command)
    app.command("merge-shards", help=merge_cmd.HELP, rich_help_panel=EDITING_PANEL,
                short_help="Merge a WISE delta's pending shards now.")(merge_cmd.merge_command)
    app.command("train-recipe", help=train_recipe_cmd.HELP, rich_help_panel=EDITING_PANEL,
                short_help="Meta-train RECIPE's retriever and prompts for a base model.")(
                    train_recipe_cmd.train_recipe_command)
    app.command("eval", help=eval_cmd.HELP, rich_help_panel=EVALUATING_PANEL,
                short_help="Measure methods on a suite (Rel/Gen/Loc vs T), or audit a delta.")(eval_cmd.eval_command)
    app.command("load", help=load_cmd.HELP, rich_help_panel=USING_PANEL,
                short_help="Load a model with a delta: what it holds, and its outputs.")(load_cmd.load_command)
    app.command("export", help=export_cmd.HELP, rich_help_panel=USING_PANEL,
                short_help="Write a model with its edits as one folder (self-contained or merged).")(
                    export_cmd.export_command)
    return app


app = build_app()


def main() -> None:
    """Console-script entry point (``wiseedit = "wiseedit.cli.app:main"``): SIGTERM unwinds like Ctrl-C."""
    signal.signal(signal.SIGTERM, raise_terminated)
    app()


if __name__ == "__main__":  # python -m wiseedit.cli.app (e.g. under accelerate launch -m)
    main()
