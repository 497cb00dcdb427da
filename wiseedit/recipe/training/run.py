"""Meta-training RECIPE for a base model by name: the library function behind ``wiseedit train-recipe``.

:func:`train` resolves everything it can before loading the model (the data, the output folder, the
checkpoint to resume from, the encoder), then loads the base model and runs
:func:`~wiseedit.recipe.training.loop.meta_train` into ``out`` (default ``./<model name>.recipe``).

Resuming: unless ``TrainSettings.resume`` is False, a run continues from the newest checkpoint in
``out``. Settings left as None take the checkpoint's values; settings given must equal them
(checkpoint_every excepted), and the data and the base model must be the ones it was trained on.
``resume=False`` discards the checkpoints in ``out`` (after every check, just before training) and
starts at step 0.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence, TextIO

from wiseedit.artifacts.location import check_writable, sanitise_name
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.recipe.checkpoint import check_base, list_checkpoints, read_meta
from wiseedit.recipe.config import RecipeConfig, check_trainable
from wiseedit.recipe.encoder import check_encoder, encoder_name
from wiseedit.recipe.training.loop import BOOKKEEPING_FIELDS, LOG_FILE, meta_train
from wiseedit.recipe.training.settings import DEFAULT_STEPS, TrainSettings
from wiseedit.recipe.training.sources import TrainData, load_train_data, usable

SUFFIX = ".recipe"
RUNNING_WINDOW = 50  # steps the running loss is averaged over

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainProgress:
    """Where a run is: `step` of `steps` done (counting resumed ones), the last and running losses."""

    step: int
    steps: int
    start: int  # the step this call started from (resumed runs: the checkpoint's)
    loss: float | None  # the last step's total loss; None before the first step of this call
    running_loss: float | None  # mean of the last RUNNING_WINDOW steps' losses


TrainProgressFn = Callable[[TrainProgress], None]


@dataclass
class TrainingRun:
    """What :func:`train` did: the newest checkpoint, the steps, the data, the losses of this call."""

    model: str  # the base model, as given
    out: Path  # the training folder (checkpoints, train_log.jsonl)
    checkpoint: Path  # absolute path of the newest checkpoint: what ``--option checkpoint=`` takes
    step: int  # the checkpoint's step
    resumed_from: int  # 0: started fresh
    config: RecipeConfig
    seed: int
    data: TrainData
    seconds: float
    history: list[dict] = field(default_factory=list)  # each step run in this call

    @property
    def loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None

    @property
    def running_loss(self) -> float | None:
        return _mean([h["loss"] for h in self.history[-RUNNING_WINDOW:]])

    def usage(self, edits: str = "edits.jsonl") -> str:
        """The command that edits with this checkpoint."""
        return (f"wiseedit edit {edits} --model {shlex.quote(self.model)} --method recipe "
                f"--option checkpoint={shlex.quote(str(self.checkpoint))}")

    def to_json(self) -> dict:
        ran = len(self.history)
        return {"checkpoint": str(self.checkpoint), "out": str(self.out), "model": self.model,
                "step": self.step, "resumed_from": self.resumed_from, "steps_run": ran,
                "loss": self.loss, "running_loss": self.running_loss, "seconds": self.seconds,
                "steps_per_second": ran / self.seconds if ran and self.seconds > 0 else None,
                "seed": self.seed, "config": self.config.to_dict(),
                "data": self.data.identity() | {"dropped_texts": self.data.dropped_texts,
                                                "skipped_records": [s.to_json() for s in self.data.skipped]},
                "usage": self.usage()}


def train(model: str, data: str | Sequence[EditRecord], out: str | Path | None = None,
          settings: TrainSettings | None = None, *, progress: TrainProgressFn | None = None,
          log: LogFn | None = None, stdin: TextIO | None = None) -> TrainingRun:
    """Meta-train RECIPE against the frozen base `model` until ``settings.steps`` steps are done in total.

    `data`: a train split (``world-train``, ``world-train-x8-invented``, ``counterfact-train``, ...),
    an edit file (``-``: `stdin`), or EditRecords (see :mod:`wiseedit.recipe.training.sources`;
    evaluation suites are refused). `settings`: how (:class:`TrainSettings`; None: all defaults, the
    best measured configuration for a fresh run). Writes checkpoints to `out` every
    ``checkpoint_every`` steps and at the end (see the module docstring for resuming). `progress` gets
    a :class:`TrainProgress` before the first step and after each; `log` one-line notes. Raises
    BadInputError on bad input, before the model is loaded when it can.

    Example: ``train("world", "world-train-x8-invented", settings=TrainSettings(steps=3000, seed=1))``.
    """
    from wiseedit.models import load_base, resolve_model

    settings = settings or TrainSettings()
    steps, seed = settings.steps, settings.seed
    train_data = (load_train_data(data, stdin=stdin) if isinstance(data, (str, Path))
                  else usable("edits", list(data)))
    resolve_model(model)  # an unknown model is refused before anything else is done
    local = Path(model).expanduser()
    out = Path(out) if out is not None else Path.cwd() / (
        sanitise_name(local.resolve().name if local.is_dir() else model.partition("@")[0]) + SUFFIX)
    latest = _latest_checkpoint(out)
    check_writable(out)
    meta = read_meta(latest) if latest is not None and settings.resume else None
    if meta is not None:
        config, seed = _resumed_settings(meta, latest, train_data, settings)
    else:
        config = fresh_config(settings)
        check_encoder(config.encoder)
        seed = 0 if seed is None else seed

    if log:
        log(f"loading model {model}")
    base = load_base(model, device=settings.device, dtype=settings.dtype)
    if meta is not None:
        try:
            check_base(meta, base.model, latest)
        except BadInputError as error:
            raise BadInputError(f"{error}; pass --restart to discard it and start over, or choose another --out") \
                from error
        if log:
            log(f"resuming from checkpoint {latest} (step {meta['step']} of {steps}); --restart starts over")
    else:
        removed = _discard(out) if latest is not None else 0
        if log:
            if removed:
                log(f"restart: removed {removed} checkpoint(s) and the training log from {out}")
            bank = f", negatives bank refreshed every {config.bank_refresh} steps" if config.bank_refresh else ""
            reads = ", prompts from the pooled encoding" if config.prompt_input == "pooled" else ""
            keys = ", keys start as the mean pooling" if config.key_init == "mean" else ""
            enc_lr = f" (encoder {config.encoder_lr:g})" if config.encoder_lr is not None else ""
            edit = f", edit margin {config.edit_margin:g}" if config.edit_margin is not None else ""
            alike = ", look-alike batches" if config.batches == "lookalike" else ""
            ema = f", checkpoints average the weights (decay {config.ema_decay:g})" if config.ema_decay else ""
            log(f"starting at step 0: encoder {config.encoder}, d_r {config.d_r}, batch {config.batch_size}, "
                f"lr {config.lr:g}{enc_lr}, seed {seed}{bank}{reads}{keys}{edit}{alike}{ema}")
    if log:
        log(_data_note(train_data))
    start = int(meta["step"]) if meta is not None else 0
    if start >= steps and log:
        log(f"the checkpoint is already at step {start} (--steps {steps}): nothing to train; raise --steps "
            "to continue")

    history: list[dict] = []

    def on_step(record: dict) -> None:
        history.append(record)
        if progress:
            progress(TrainProgress(record["step"], steps, start, record["loss"],
                                   _mean([h["loss"] for h in history[-RUNNING_WINDOW:]])))

    if progress and start < steps:
        progress(TrainProgress(start, steps, start, None, None))
    began = time.perf_counter()
    result = meta_train(base.model, base.tokenizer, None, train_data.edits, config, out, steps=steps, seed=seed,
                          resume=meta is not None, on_step=on_step, data=train_data.identity())
    seconds = time.perf_counter() - began
    checkpoint = Path(result.checkpoint).resolve()
    return TrainingRun(model, out.resolve(), checkpoint, int(read_meta(checkpoint)["step"]), start, config, seed,
                       train_data, seconds, history)


def fresh_config(settings: TrainSettings) -> RecipeConfig:
    """The config of a run that starts at step 0 with `settings`: the preset's, with the fields given."""
    config = RecipeConfig.preset(settings.preset or "default", **settings.config_fields())
    if settings.encoder is not None:
        config = replace(config, encoder=encoder_name(settings.encoder))
    return config


# -- checks done before the model is loaded ---------------------------------------------------------


def _latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint in `out`; refuses an `out` that is not a RECIPE training folder."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise BadInputError(f"{out} exists and is not a directory: pass --out with another path")
    found = list_checkpoints(out)
    if found:
        return found[-1]
    # a training folder may also hold an interrupted write's hidden temporary or an incomplete step-*
    if any(p.name != LOG_FILE and not p.name.startswith((".", "step-")) for p in out.iterdir()):
        raise BadInputError(f"{out} is a non-empty folder that holds no RECIPE checkpoint: pass --out with "
                            "another path")
    return None


def _resumed_settings(meta: dict, latest: Path, data: TrainData, settings: TrainSettings) -> tuple[RecipeConfig, int]:
    """The config and seed of a resumed run: the checkpoint's, refusing given settings that differ."""
    saved = RecipeConfig.from_dict(meta["config"])
    check_trainable(saved, f"the checkpoint {latest}")
    given = {}
    if settings.preset is not None:  # a preset given when resuming must be the one the checkpoint has
        given.update({k: v for k, v in RecipeConfig.preset(settings.preset).to_dict().items()
                      if k not in BOOKKEEPING_FIELDS})
    if settings.encoder is not None:
        given["encoder"] = encoder_name(settings.encoder)
    given.update(settings.config_fields())
    given.pop("checkpoint_every", None)  # may differ from the checkpoint's
    if settings.seed is not None:
        given["seed"] = settings.seed
    recorded = saved.to_dict() | {"seed": meta["seed"]}
    differ = [f"{k} {v!r} (the checkpoint has {recorded[k]!r})" for k, v in given.items() if recorded[k] != v]
    if differ:
        raise BadInputError(f"the checkpoint {latest} was trained with other settings: {'; '.join(differ)}; leave "
                            "them out to resume, or pass --restart to start over (or another --out)")
    trained_on = meta.get("data") or {}
    if trained_on.get("sha256") and trained_on["sha256"] != data.sha256:
        raise BadInputError(f"the checkpoint {latest} was trained on other data ({trained_on.get('name')}, "
                            f"{trained_on.get('edits')} edits) than {data.name} ({len(data.edits)} edits); resume "
                            "with the same --data, or pass --restart to start over (or another --out)")
    if settings.checkpoint_every is not None:
        saved = replace(saved, checkpoint_every=settings.checkpoint_every)
    return saved, int(meta["seed"])


def _discard(out: Path) -> int:
    """Remove the checkpoints and the training log in `out` (a restart); returns how many checkpoints."""
    found = list_checkpoints(out)
    for checkpoint in found:
        shutil.rmtree(checkpoint)
    (out / LOG_FILE).unlink(missing_ok=True)
    return len(found)


def _data_note(data: TrainData) -> str:
    note = f"data {data.name}: {len(data.edits)} edits"
    if data.dropped_texts:
        note += f"; {data.dropped_texts} paraphrase(s)/probe(s) removed because an evaluation suite measures them"
    if data.skipped:
        reasons: dict[str, int] = {}
        for s in data.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        shown = ", ".join(str(s) for s in data.skipped[:3])
        more = f" (+{len(data.skipped) - 3} more; --json lists them all)" if len(data.skipped) > 3 else ""
        note += (f"; skipped {len(data.skipped)} record(s): "
                 + ", ".join(f"{n} {reason}" for reason, n in reasons.items()) + f". First: {shown}{more}")
    return note


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
