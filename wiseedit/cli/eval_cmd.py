"""``wiseedit eval``: a thin wrapper over :func:`wiseedit.evaluation.runner.evaluate` and
:func:`wiseedit.evaluation.audit.evaluate_delta`."""

from __future__ import annotations

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
)
from wiseedit.cli.eval_output import EvalProgressBar, eval_table
from wiseedit.cli.output import note, print_json, stderr_console
from wiseedit.errors import BadInputError, CheckFailed
from wiseedit.registry import METHOD_NAMES

EXAMPLE = "wiseedit eval --model world --method wise,grace -T 1,10 --limit 20"
DEFAULT_SUITE = "world"
DEFAULT_METHODS = "wise-retrieve"
DEFAULT_T = "1,10,100"

HELP = "\n\n".join([
    "Measure editing methods on a suite (lifelong protocol), or audit a saved delta.",
    "For each method and each T, the suite's edits are cut into blocks of T (a shorter remainder is left "
    "out, and the log says so); each block is applied to "
    "the base model one edit after another, then all its edits are measured: Rel (the edit is recalled, "
    "teacher-forced), Gen (on its paraphrases), Loc (unrelated prompts predicted as by the unedited model), "
    "Port (derived questions) and Rel(gen) (greedy decoding). Figures are means over blocks; hallucination "
    "adds the target's perplexity (PPL, lower is better), temporal the OOD rate.",
    "With --output-path, results.json is written there and every finished block is recorded, so a rerun "
    "of the same command resumes where it stopped. --delta DIR evaluates a saved delta on the edits of "
    "its audit log instead. Under accelerate launch the blocks are shared between the processes.",
    f"[bold]Example[/bold]:\n  [cyan]{EXAMPLE}[/cyan]",
])

SUITE_PANEL = "Suite and protocol"


def _split_list(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise BadInputError(f"{what} expects a comma-separated list without empty items, got {text!r}")
    return items


def _T_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(item) for item in _split_list(text, "-T"))
    except ValueError:
        raise BadInputError(f"-T expects whole numbers of edits such as 1,10,100, got {text!r}") from None
    return values


def method_options(pairs: list[str] | None, methods: list[str]) -> dict[str, dict]:
    """``--option`` values per method: ``KEY=VALUE`` applies to the only method evaluated;
    ``METHOD:KEY=VALUE`` to that method among several."""
    out: dict[str, dict] = {}
    for key, value in parse_options(pairs).items():
        method, sep, name = key.rpartition(":")
        if not sep:
            if len(methods) != 1:
                raise BadInputError(f"--option {key}=... is ambiguous with several methods: write it as "
                                    f"METHOD:{key}=VALUE (e.g. --option {methods[0]}:{key}=...)")
            method = methods[0]
        elif method not in methods:
            raise BadInputError(f"--option {key}: {method!r} is not among the methods evaluated "
                                f"({', '.join(methods)})")
        out.setdefault(method, {})[name] = value
    return out


@reports_errors
def eval_command(
    model: ModelOpt = None,
    suite: Annotated[Optional[str], typer.Option(
        "--suite", "-s", metavar="SUITE", rich_help_panel=SUITE_PANEL, show_default=False,
        help="world, zsre, counterfact, hallucination, temporal, or an edit file (JSONL or JSON array). "
             f"Default: {DEFAULT_SUITE}.")] = None,
    method: Annotated[Optional[str], typer.Option(
        "--method", metavar="METHODS", rich_help_panel=METHOD_PANEL, show_default=False,
        help=f"Comma-separated methods, each evaluated on the same model and edits: {', '.join(METHOD_NAMES)}. "
             f"Default: {DEFAULT_METHODS}.")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", metavar="KEY=VALUE", rich_help_panel=METHOD_PANEL, show_default=False,
        help="A method setting, repeatable; with several methods write METHOD:KEY=VALUE "
             "(--option grace:eps=0.2).")] = None,
    T: Annotated[Optional[str], typer.Option(
        "-T", metavar="T,...", rich_help_panel=SUITE_PANEL, show_default=False,
        help=f"Edits applied before measuring, comma-separated; the suite is cut into blocks of T and the "
             f"model reset between blocks. Default: {DEFAULT_T}.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", "-n", metavar="N", min=1, rich_help_panel=SUITE_PANEL,
        help="Use only the first N edits of the suite.")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", metavar="S", rich_help_panel=METHOD_PANEL,
        help="Seed of torch before each block and of the methods that draw random numbers (wise, grace). "
             "Default: the methods' own.")] = None,
    each_edit: Annotated[bool, typer.Option(
        "--each-edit", rich_help_panel=SUITE_PANEL,
        help="Measure each edit right after applying it (not at the end of its block). This hides "
             "forgetting; results are labelled mode each-edit.")] = False,
    delta: Annotated[Optional[Path], typer.Option(
        "--delta", "-d", metavar="DIR", rich_help_panel=SUITE_PANEL,
        help="Evaluate this saved delta on the edits of its audit log, Loc against its base model.")] = None,
    output_path: Annotated[Optional[Path], typer.Option(
        "--output-path", "-o", metavar="DIR", rich_help_panel=OUTPUT_PANEL,
        help="Write DIR/results.json; record finished blocks there so that a rerun resumes.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=OUTPUT_PANEL,
        help="Start over in an --output-path that holds another (or this) evaluation.")] = False,
    log_samples: Annotated[bool, typer.Option(
        "--log-samples", rich_help_panel=OUTPUT_PANEL,
        help="Also write DIR/samples.jsonl: every edit's figures, per method, T and block.")] = False,
    plot: Annotated[bool, typer.Option(
        "--plot", rich_help_panel=OUTPUT_PANEL,
        help="Also write DIR/plot.png: Rel, Gen, Loc against T per method (needs wiseedit\\[plot]).")] = False,
    fail_under: Annotated[Optional[str], typer.Option(
        "--fail-under", metavar="METRIC=BAR,...", rich_help_panel=OUTPUT_PANEL,
        help="Exit 1 if a figure is below its bar, e.g. rel=0.9,loc=0.99 (rel, gen, loc, port, rel_generated, "
             "ood). Results are written first.")] = None,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    chat_template: ChatTemplateOpt = None,
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    use_threads(threads)
    from wiseedit.evaluation.checks import failures, parse_bars

    bars = parse_bars(fail_under)
    if (log_samples or plot) and output_path is None:
        raise BadInputError(f"{'--log-samples' if log_samples else '--plot'} writes into DIR: pass --output-path DIR")
    if plot:
        from wiseedit.evaluation.plot import require_matplotlib

        require_matplotlib()
    console = stderr_console()
    if delta is not None:
        given = [flag for flag, value in (("--suite", suite), ("--method", method), ("--option", option),
                                          ("-T", T), ("--limit", limit), ("--seed", seed),
                                          ("--each-edit", each_edit or None),
                                          ("--chat-template", chat_template)) if value is not None]
        if given:
            raise BadInputError(f"--delta evaluates the delta's own edits with its own method: drop {', '.join(given)}")
        from wiseedit.evaluation.audit import evaluate_delta

        report = evaluate_delta(delta, model=model, output_path=output_path, force=force, log_samples=log_samples,
                                device=device, dtype=dtype, log=note(console))
        title = f"delta {delta} ({report.document['config']['edits']} edits of its audit log)"
    else:
        from wiseedit.evaluation.runner import EvalConfig, evaluate

        if model is None:
            raise BadInputError("no model given: pass --model (a folder, an alias or a Hugging Face id)")
        methods = _split_list(method or DEFAULT_METHODS, "--method")
        config = EvalConfig(suite=suite or DEFAULT_SUITE, methods=tuple(methods),
                            options=method_options(option, methods), T=_T_list(T or DEFAULT_T), limit=limit,
                            seed=seed, mode="each-edit" if each_edit else "lifelong",
                            chat_template=chat_template or "auto")
        with EvalProgressBar(console) as progress:
            report = evaluate(model, config, output_path=output_path, force=force, log_samples=log_samples,
                              device=device, dtype=dtype, progress=progress, log=note(console))
        data = report.document["data"]
        title = (f"{Path(data['suite']).name}: {data['edits']} edits, "
                 + ("measured right after each edit (hides forgetting)" if each_edit else "lifelong protocol"))
    failed = failures(report.rows(), bars)
    if not report.is_main:  # another process of an accelerate launch: the main one reports
        raise typer.Exit(1 if failed else 0)
    if plot:
        from wiseedit.evaluation.plot import plot_results
        from wiseedit.evaluation.store import PLOT_FILE

        plot_results(report.document, output_path / PLOT_FILE)
    console.print(eval_table(report.rows(), title))
    if output_path is not None:
        console.print(f"results in [bold]{escape(str(output_path))}[/bold]")
    if json_output:
        print_json(report.to_json())
    if failed:
        raise CheckFailed("\n".join(failed))
