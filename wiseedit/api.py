"""The library API the CLI wraps: load an edited model, edit a model, merge WISE shards, meta-train
RECIPE (:func:`train_recipe`, defined in :mod:`wiseedit.recipe.training.run`).

Every function validates what it can before loading a model (edit file, delta directory, output
location), and writes nothing until the very end, atomically: a failure leaves the disk as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TextIO, get_args

from wiseedit.artifacts import CONFIG_FILE, Delta, default_delta_dir, load_delta, save_delta
from wiseedit.artifacts.atomic import backup_path, interrupted_write_message
from wiseedit.artifacts.location import check_writable
from wiseedit.edits import EditRecord, read_edits
from wiseedit.errors import BadInputError, InputProblems
from wiseedit.evaluation.batching import encode_pair
from wiseedit.generation import continue_prompts
from wiseedit.methods.base import EditingMethod, ProgressFn
from wiseedit.methods.registry import MethodName, method_class
from wiseedit.models import DType, load_base, resolve_model
from wiseedit.recipe.training.run import TrainingRun  # noqa: F401  (re-exported: wiseedit.TrainingRun)
from wiseedit.recipe.training.run import train as train_recipe  # noqa: F401  (re-exported: wiseedit.train_recipe)
from wiseedit.session import EditedModel, LogFn, attach, base_name, load_edited
from wiseedit.wise.config import MergeAlgorithm

WISE_METHODS = ("wise", "wise-retrieve")
DEFAULT_METHOD: MethodName = "wise"
EXTRA_TOKENS = 2  # the before/after columns show this many tokens past the target's length


def load(model: str | None, delta: str | Path | None = None, *, device: str = "auto",
         dtype: DType = "auto"):
    """The Hugging Face model `model` with `delta` applied: ``generate`` and ``forward`` give the edited
    behaviour, ``model.wiseedit`` is the editing method (``.summary()``, ``.detach()``), or None
    without a delta. Use :func:`load_edited` to get the tokenizer and the delta as well."""
    edited = load_edited(model, delta, device=device, dtype=dtype)
    if edited.method is None:
        edited.model.wiseedit = None
    return edited.model


@dataclass(frozen=True)
class EditOutcome:
    """One edit's greedy continuation before and after editing; `recalled`: the continuation after
    starts with exactly the target's tokens."""

    id: str
    prompt: str
    target: str
    before: str
    after: str
    recalled: bool

    def to_json(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "target": self.target, "before": self.before,
                "after": self.after, "recalled": self.recalled}


@dataclass
class EditResult:
    """What :func:`edit` did: the saved delta, one outcome per edit, and the edited model, still live."""

    delta: Delta
    outcomes: list[EditOutcome]
    seconds_per_edit: float
    edited: EditedModel

    @property
    def method(self) -> str:
        return self.delta.method

    @property
    def recalled(self) -> int:
        """How many of the new edits the edited model recalls (greedy, exact tokens)."""
        return sum(o.recalled for o in self.outcomes)

    def to_json(self) -> dict:
        return {"delta": str(self.delta.path), "method": self.method, "edits": len(self.outcomes),
                "total_edits": self.delta.num_edits, "seconds_per_edit": self.seconds_per_edit,
                "results": [o.to_json() for o in self.outcomes]}


def edit(model: str | None, edits: str | Path | Sequence[EditRecord], *, method: MethodName | None = None,
         options: dict | None = None, delta: str | Path | None = None, out: str | Path | None = None,
         device: str = "auto", dtype: DType = "auto", overwrite: bool = False,
         progress: ProgressFn | None = None, log: LogFn | None = None,
         stdin: TextIO | None = None) -> EditResult:
    """Teach `model` the `edits` and save what was learned as a delta directory.

    `edits`: an edit file (JSONL or JSON array, ``"-"`` for `stdin`) or EditRecords; read and validated
    before anything is loaded. `method` (default ``wise``) is created with `options` (its settings, e.g.
    ``{"n_iter": 30, "layer": 20}``), unless `delta` names an existing delta to continue: its method and
    settings are kept (passing another `method`, or `options`, is refused), its base is checked, and the
    new edits are appended to it (in place, or in `out` leaving `delta` untouched). A new delta goes to
    `out`, else beside the model (:func:`~wiseedit.artifacts.default_delta_dir`); an existing directory
    there is replaced only with `overwrite`. `model` may be None when continuing: the delta's base.
    `progress(done, total)` is called once with 0 before the first edit, then after each; `log` gets
    one-line notes on the stages.
    """
    records = _records(edits, stdin)
    previous = load_delta(Path(delta)) if delta is not None else None
    name = _method_name(method, previous, options)
    cls = method_class(name)
    if previous is None:
        cls.check_options(dict(options or {}))
    else:
        _check_new_ids(records, previous)
    model_name = model if model is not None else _recorded_base(previous)
    source = resolve_model(model_name)
    target = Path(out) if out is not None else (
        previous.path if previous is not None else default_delta_dir(source.path, source.builtin, source.name,
                                                                     Path.cwd()))
    _check_target(target, previous, overwrite)

    if log:
        log(f"loading model {model_name}")
    base = load_base(model_name, device=device, dtype=dtype)
    if previous is not None:
        editor = attach(base, previous)
    else:
        editor = _create(cls, base, name, options)
        base.model.wiseedit = editor
    pairs = [encode_pair(base.tokenizer, r.prompt, r.target) for r in records]
    prompts = [p.prompt_ids for p in pairs]
    lengths = [len(p.answer_ids) + EXTRA_TOKENS for p in pairs]

    before = continue_prompts(base.model, base.tokenizer, prompts, lengths, method=editor)
    if log:
        log(f"applying {len(records)} edit(s) with {name}")
    if progress:
        progress(0, len(records))  # the bar (and its clock) starts with the first edit, not the load
    start = time.perf_counter()
    editor.apply(records, progress)
    seconds = (time.perf_counter() - start) / len(records)
    after = continue_prompts(base.model, base.tokenizer, prompts, lengths, method=editor)

    saved = save_delta(
        target, method=name, state=editor.state(), edited_module=editor.summary().get("module"),
        base_name=base_name(base.source), base_revision=base.source.revision,
        base_fingerprint=base.fingerprint, seed=_seed(editor, previous),
        new_edits=[r.to_json() for r in records], previous=previous, overwrite=overwrite)
    outcomes = [
        EditOutcome(r.id, r.prompt, r.target, b.text, a.text, a.ids[:len(p.answer_ids)] == p.answer_ids)
        for r, p, b, a in zip(records, pairs, before, after)
    ]
    return EditResult(saved, outcomes, seconds, EditedModel(base, editor, saved))


@dataclass
class MergeResult:
    """What :func:`merge_shards` did: the delta (rewritten when `merged` > 0) and the method's summary."""

    delta: Delta
    merged: int  # shards merged; 0: there was nothing to merge and nothing was written
    summary: dict

    def to_json(self) -> dict:
        return {"delta": str(self.delta.path), "method": self.delta.method, "merged_shards": self.merged,
                "summary": self.summary}


def merge_shards(delta: str | Path, *, model: str | None = None, algorithm: MergeAlgorithm | None = None,
                 device: str = "auto", dtype: DType = "auto", log: LogFn | None = None) -> MergeResult:
    """Merge the pending WISE shards of `delta`, and its current shard if it holds edits, now
    (WISE-Merge: into the consolidated memory; WISE-Retrieve: into one more memory), with `algorithm`
    or the delta's configured one, and rewrite the delta in place, atomically. `model` defaults to the
    base the delta records."""
    if algorithm is not None and algorithm not in get_args(MergeAlgorithm):
        raise BadInputError(f"merge algorithm {algorithm!r} is not one of {', '.join(get_args(MergeAlgorithm))}")
    saved = load_delta(Path(delta))
    if saved.method not in WISE_METHODS:
        raise BadInputError(f"delta {saved.path} was made with {saved.method}; only WISE deltas "
                            f"({', '.join(WISE_METHODS)}) have shards to merge")
    check_writable(saved.path, "the delta")
    edited = load_edited(model, saved, device=device, dtype=dtype, log=log)
    merged = edited.method.merge_pending(algorithm)
    if merged == 0:
        return MergeResult(saved, 0, edited.method.summary())
    config = saved.config
    rewritten = save_delta(
        saved.path, method=saved.method, state=edited.method.state(), edited_module=config["edited_module"],
        base_name=config["base_model_name_or_path"], base_revision=config["base_revision"],
        base_fingerprint=edited.base.fingerprint, seed=config["seed"], new_edits=[], previous=saved)
    return MergeResult(rewritten, merged, edited.method.summary())


# -- checks done before any model is loaded ---------------------------------------------------------


def _records(edits: str | Path | Sequence[EditRecord], stdin: TextIO | None) -> list[EditRecord]:
    if isinstance(edits, (str, Path)):
        return read_edits(edits, stdin=stdin)
    records = list(edits)
    if not records:
        raise BadInputError("no edits given")
    if not all(isinstance(r, EditRecord) for r in records):
        raise TypeError("edits must be a path or a sequence of EditRecord")
    return records


def _method_name(method: str | None, previous: Delta | None, options: dict | None) -> str:
    if previous is None:
        return method or DEFAULT_METHOD
    if method is not None and method != previous.method:
        raise BadInputError(f"delta {previous.path} was made with {previous.method}, not {method}: leave "
                            "--method out to continue it, or start a new delta with --out")
    if options:
        raise BadInputError(f"delta {previous.path} keeps the settings it was made with; --option, --layer, "
                            "--module and --seed only apply to a new delta (start one with --out)")
    return previous.method


def _recorded_base(previous: Delta | None) -> str:
    if previous is None:
        raise BadInputError("no model given: pass --model (a folder, an alias or a Hugging Face id)")
    return previous.config["base_model_name_or_path"]


def _check_new_ids(records: Sequence[EditRecord], previous: Delta) -> None:
    """Refuse edits whose id the delta already holds: an id names one edit of the audit log (and one
    row of RECIPE's store, which removes and replaces by id), so a repeat would make it ambiguous."""
    held = {entry.get("id") for entry in previous.edits_log}
    problems = [f"{r.source or 'edit'}: id: {r.id!r} is already an edit of {previous.path}; give this edit "
                "an id of its own (an edit without an id is named <file name>:<line>)"
                for r in records if r.id in held]
    if problems:
        raise InputProblems(problems)


def _check_target(target: Path, previous: Delta | None, overwrite: bool) -> None:
    """Refuse now, not after the training, to write where save_delta would refuse to, or could not."""
    check_writable(target)
    if not target.exists():
        if backup_path(target).exists():
            raise BadInputError(interrupted_write_message(target))
        return
    if previous is not None and target.resolve() == Path(previous.path).resolve():
        return  # appending in place
    if not target.is_dir():
        raise BadInputError(f"{target} exists and is not a directory: pass --out with another path")
    if not overwrite:
        raise BadInputError(f"{target} already exists: pass --delta {target} to continue editing it, "
                            "--out DIR to write elsewhere, or --force to replace it")
    if not (target / CONFIG_FILE).is_file() and any(target.iterdir()):
        raise BadInputError(f"{target} is a non-empty folder that is not a wiseedit delta; refusing to "
                            "replace it even with --force: pass --out with another path")


def _create(cls: type[EditingMethod], base, name: str, options: dict | None) -> EditingMethod:
    try:
        return cls.create(base.model, base.tokenizer, dict(options or {}))
    except ValueError as error:
        if not options:
            raise
        # GRACE / FT-L validate their options with ValueError; to the user it is bad input
        raise BadInputError(f"invalid options for method {name}: {error}") from error


def _seed(editor: EditingMethod, previous: Delta | None) -> int | None:
    if previous is not None:
        return previous.config["seed"]
    seed = getattr(getattr(editor, "config", None), "seed", None)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
