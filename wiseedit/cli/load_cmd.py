"""``wiseedit load``: a thin wrapper over :func:`wiseedit.session.load_edited`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

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
from wiseedit.cli.output import facts_table, generations_table, note, print_json, stderr_console
from wiseedit.errors import BadInputError

EXAMPLE = 'wiseedit load --delta world.wiseedit -p "Yobo Coryarcor speaks" --compare'

HELP = "\n\n".join([
    "Load a model with a delta, show what the delta holds, and generate from it.",
    "Checks that the delta was made on these very weights and lists its method, edits and memories; "
    "with --prompt it prints greedy continuations (with --compare, the base model's beside them).",
    f"[bold]Example[/bold]:\n  [cyan]{EXAMPLE}[/cyan]",
])

PROMPT_PANEL = "Generation"


@reports_errors
def load_command(
    model: ModelOpt = None,
    delta: Annotated[Path | None, typer.Option(
        "--delta", "-d", metavar="DIR", help="The delta directory to apply (written by wiseedit edit).")] = None,
    prompt: Annotated[list[str] | None, typer.Option(
        "--prompt", "-p", metavar="TEXT", rich_help_panel=PROMPT_PANEL, show_default=False,
        help="A prompt to continue greedily; repeatable. Put through the chat template when the delta "
             "was made with one.")] = None,
    compare: Annotated[bool, typer.Option(
        "--compare", rich_help_panel=PROMPT_PANEL,
        help="Also show the base model's continuation of each prompt.")] = False,
    max_new_tokens: Annotated[int, typer.Option(
        "--max-new-tokens", min=1, metavar="N", rich_help_panel=PROMPT_PANEL,
        help="Tokens to generate per prompt.")] = 20,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    use_threads(threads)
    from wiseedit.artifacts.exported import PROVENANCE_FILE, exported_delta
    from wiseedit.session import load_edited

    if compare and delta is None and exported_delta(model) is None:
        if model is not None and (Path(model).expanduser() / PROVENANCE_FILE).is_file():
            raise BadInputError(f"--compare needs the base model beside the edited one, and {model} is a merged "
                                "export (the edits are baked into its weights): pass the original base with "
                                "--model and the delta with --delta")
        raise BadInputError("--compare puts the edited and the base model side by side: pass --delta "
                            "(or --model a self-contained wiseedit export)")
    if compare and not prompt:
        raise BadInputError("--compare compares continuations: pass at least one --prompt")
    console = stderr_console()
    edited = load_edited(model, delta, device=device, dtype=dtype, log=note(console))
    info = edited.describe()
    rows = []
    if prompt:
        outputs = edited.generate(prompt, max_new_tokens)
        rows = [{"prompt": p, "output": o} for p, o in zip(prompt, outputs)]
        if compare:
            for row, base in zip(rows, edited.generate_base(prompt, max_new_tokens)):
                row["base_output"] = base
    console.print(facts_table(_facts(info)))
    if rows:
        console.print(generations_table(rows, compare))
    if json_output:
        print_json(info | {"generations": rows})


def _facts(info: dict) -> list[tuple[str, object]]:
    from wiseedit.artifacts import short_hash

    name, path = info["model"], info["model_path"]
    same = Path(name).expanduser().resolve() == Path(path)
    facts: list[tuple[str, object]] = [("model", path if same else f"{name} ({path})"),
                                       ("weights", short_hash(info["base_fingerprint"]))]
    if info["delta"] is None:
        return facts + [("delta", "none: this is the base model")]
    check = Text.assemble(("✓ ", "green"), f"made on {info['made_on']}, same weights")
    facts += [("delta", info["delta"]), ("method", info["method"]), ("edits", info["edits"]),
              ("module", info["edited_module"] or "-"), ("base check", check)]
    shown = {"method", "edits", "module"}
    facts += [(key.replace("_", " "), value) for key, value in info["summary"].items() if key not in shown]
    if info.get("chat_template", {}).get("template") is not None:
        facts.append(("prompts", "through the chat template the delta records"))
    return facts + [("created", info["created"]), ("updated", info["updated"])]
