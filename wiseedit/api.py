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
from wiseedit.chat import ChatFormat
from wiseedit.artifacts.lock import writing
from wiseedit.artifacts.reading import read_config
from wiseedit.edits import EditRecord, read_edits
from wiseedit.errors import BadInputError, InputProblems
from wiseedit.generation import continue_prompts
from wiseedit.methods.base import ProgressFn
from wiseedit.registry import MethodName, method_class
from wiseedit.models import DType, load_base, resolve_model
from wiseedit.models.context import check_context
from wiseedit.models.loading import load_tokenizer
from wiseedit.recipe.training.run import TrainingRun  # noqa: F401  (re-exported: wiseedit.TrainingRun)
from wiseedit.recipe.training.run import train as train_recipe  # noqa: F401  (re-exported: wiseedit.train_recipe)
from wiseedit.session import EditedModel, LogFn, attach, base_name, load_edited, recorded_base
from wiseedit.tokens import encode_pair
from wiseedit.wise.config import MergeAlgorithm

WISE_METHODS = ("wise", "wise-retrieve")
DEFAULT_METHOD: MethodName = "wise-retrieve"  # docs/wise.md "Shard size": it keeps what WISE-Merge merges away
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

    def __repr__(self) -> str:  # the default would print the model, the saved state and every outcome
        return (f"EditResult(delta={str(self.delta.path)!r}, method={self.method!r}, edits={len(self.outcomes)}, "
                f"recalled={self.recalled}, total_edits={self.delta.num_edits}, "
                f"seconds_per_edit={self.seconds_per_edit:.3g})")

    def to_json(self) -> dict:
        return {"delta": str(self.delta.path), "method": self.method, "edits": len(self.outcomes),
                "total_edits": self.delta.num_edits, "seconds_per_edit": self.seconds_per_edit,
                "results": [o.to_json() for o in self.outcomes]}


def edit(model: str | None, edits: str | Path | Sequence[EditRecord], *, method: MethodName | None = None,
         options: dict | None = None, delta: str | Path | None = None, out: str | Path | None = None,
         device: str = "auto", dtype: DType = "auto", overwrite: bool = False,
         progress: ProgressFn | None = None, log: LogFn | None = None,
         stdin: TextIO | None = None, chat_template: str | None = None) -> EditResult:
    """Teach `model` the `edits` and save what was learned as a delta directory.

    `edits`: an edit file (JSONL or JSON array, ``"-"`` for `stdin`) or EditRecords; read and validated
    before anything is loaded. `method` (default ``wise``) is created with `options` (its settings, e.g.
    ``{"n_iter": 30, "layer": 20}``), unless `delta` names an existing delta to continue: its method and
    settings are kept (passing another `method`, or `options`, is refused), its base is checked, and the
    new edits are appended to it (in place, or in `out` leaving `delta` untouched). A new delta goes to
    `out`, else beside the model (:func:`~wiseedit.artifacts.default_delta_dir`); an existing directory
    there is replaced only with `overwrite`. `model` may be None when continuing: the delta's base.
    `progress(done, total)` is called once with 0 before the first edit, then after each; `log` gets
    one-line notes on the stages. `chat_template` ("auto", the default, or "none"): put every prompt
    through the tokenizer's chat template when it has one (:mod:`wiseedit.chat`); recorded in the delta,
    whose own choice a continued delta keeps. A text too long for the model's context is refused
    before the model is loaded.

    Writers of one delta take turns (:func:`~wiseedit.artifacts.lock.writing`): while another process
    writes `delta` or `out`, this call waits (one `log` line says so), then reads `delta` as that one
    left it, so no edit is lost.
    """
    records = _records(edits, stdin)
    if delta is not None:
        read_config(Path(delta))  # a missing or foreign folder is refused before any lock is taken
    else:
        method_class(method or DEFAULT_METHOD).check_options(dict(options or {}))
    hint = ""
    if out is not None:
        target, flag = Path(out), "out"
    elif delta is not None:
        target, flag, hint = Path(delta), "delta", "; pass {out} to save the continued delta elsewhere"
    else:
        source = resolve_model(model if model is not None else recorded_base(None))
        target = default_delta_dir(source.path, source.builtin, source.name, Path.cwd())
        flag, hint = "the default delta folder", "; pass {out} to write elsewhere"
    check_writable(target, flag, hint)
    # The delta is read under the lock: a writer that waited continues from what the other one saved.
    with writing(delta, target, log=log):
        return _edit_locked(model, records, method, options, Path(delta) if delta is not None else None,
                            target, device, dtype, overwrite, progress, log, chat_template)


def _edit_locked(model, records, method, options, delta: Path | None, target: Path, device, dtype,
                 overwrite: bool, progress, log, chat_template: str | None) -> EditResult:
    """:func:`edit` once the writer locks of `delta` and `target` are held."""
    previous = load_delta(delta) if delta is not None else None
    name = _method_name(method, previous, options)
    if previous is not None:
        _check_new_ids(records, previous)
    model_name = model if model is not None else recorded_base(previous)
    _check_target(target, previous, overwrite)
    source = resolve_model(model_name)
    tokenizer = load_tokenizer(source)
    chat = _chat_format(chat_template, previous, tokenizer)
    fed = chat.records(tokenizer, records)  # what the model sees; the audit log keeps the user's text
    check_context(fed, tokenizer, source.path, model_name)

    if log:
        log(f"loading model {model_name}" + (" (prompts through its chat template)" if chat.applied else ""))
    base = load_base(model_name, device=device, dtype=dtype)
    if previous is not None:
        editor = attach(base, previous)
    else:
        editor = method_class(name).create(base.model, base.tokenizer, dict(options or {}))
        base.model.wiseedit = editor
    pairs = [encode_pair(base.tokenizer, r.prompt, r.target) for r in fed]
    prompts = [p.prompt_ids for p in pairs]
    lengths = [len(p.answer_ids) + EXTRA_TOKENS for p in pairs]

    before = continue_prompts(base.model, base.tokenizer, prompts, lengths, method=editor)
    if log:
        log(f"applying {len(records)} edit(s) with {name}")
    if progress:
        progress(0, len(records))  # the bar (and its clock) starts with the first edit, not the load
    start = time.perf_counter()
    editor.apply(fed, progress)
    seconds = (time.perf_counter() - start) / len(records)
    after = continue_prompts(base.model, base.tokenizer, prompts, lengths, method=editor)

    saved = save_delta(
        target, method=name, state=editor.state(), edited_module=editor.summary().get("module"),
        base_name=base_name(base.source), base_revision=base.source.revision,
        base_fingerprint=base.fingerprint, seed=editor.seed if previous is None else previous.config["seed"],
        new_edits=[r.to_json() for r in records], previous=previous, overwrite=overwrite,
        chat_template=chat.to_json())
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

    def __repr__(self) -> str:
        return f"MergeResult(delta={str(self.delta.path)!r}, method={self.delta.method!r}, merged={self.merged})"

    def to_json(self) -> dict:
        return {"delta": str(self.delta.path), "method": self.delta.method, "merged_shards": self.merged,
                "summary": self.summary}


def merge_shards(delta: str | Path, *, model: str | None = None, algorithm: MergeAlgorithm | None = None,
                 device: str = "auto", dtype: DType = "auto", log: LogFn | None = None) -> MergeResult:
    """Merge the pending WISE shards of `delta`, and its current shard if it holds edits, now
    (WISE-Merge: into the consolidated memory; WISE-Retrieve: into one more memory), with `algorithm`
    or the delta's configured one, and rewrite the delta in place, atomically. `model` defaults to the
    base the delta records. Holds the delta's writer lock (waiting for another writer) from reading
    it to saving it, as :func:`edit` does."""
    if algorithm is not None and algorithm not in get_args(MergeAlgorithm):
        raise BadInputError(f"merge algorithm {algorithm!r} is not one of {', '.join(get_args(MergeAlgorithm))}")
    _check_mergeable(Path(delta), read_config(Path(delta))["method"])  # before any lock or model load
    check_writable(Path(delta), "the delta")
    with writing(delta, log=log):
        saved = load_delta(Path(delta))  # under the lock: a writer we waited for may have changed it
        _check_mergeable(saved.path, saved.method)
        return _merge_locked(saved, model, algorithm, device, dtype, log)


def _check_mergeable(path: Path, method: str) -> None:
    if method not in WISE_METHODS:
        raise BadInputError(f"delta {path} was made with {method}; only WISE deltas "
                            f"({', '.join(WISE_METHODS)}) have shards to merge")


def _merge_locked(saved: Delta, model: str | None, algorithm, device: str, dtype: DType,
                  log: LogFn | None) -> MergeResult:
    """:func:`merge_shards` once the delta's writer lock is held and the delta read under it."""
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
        made = f"delta {previous.path} was made with {previous.method}, not {method}"
        raise BadInputError(f"{made}: leave method None to continue it, or start a new delta with out=<folder>",
                            cli=f"{made}: leave --method out to continue it, or start a new delta with --out")
    if options:
        kept = f"delta {previous.path} keeps the settings it was made with"
        raise BadInputError(f"{kept}; options only apply to a new delta (start one with out=<folder>)",
                            cli=f"{kept}; --option, --layer, --module and --seed only apply to a new delta "
                                "(start one with --out)")
    return previous.method


def _chat_format(mode: str | None, previous: Delta | None, tokenizer) -> ChatFormat:
    """The chat format of a new delta (`mode` with `tokenizer`), or the one `previous` was made with."""
    if previous is None:
        return ChatFormat.resolve(mode, tokenizer)
    recorded = ChatFormat.from_json(previous.config.get("chat_template"))
    if mode is not None and mode != recorded.mode:
        made = f"delta {previous.path} was made with"
        raise BadInputError(f"{made} chat_template={recorded.mode!r}; its edits must be put to the model the "
                            "same way: leave chat_template None to continue it",
                            cli=f"{made} --chat-template {recorded.mode}; its edits must be put to the model the "
                                "same way: leave --chat-template out to continue it")
    return recorded


def _check_new_ids(records: Sequence[EditRecord], previous: Delta) -> None:
    """Refuse edits whose id the delta already holds: an id names one edit of the audit log (and one
    row of RECIPE's store, which removes and replaces by id), so a repeat would make it ambiguous."""
    held = {entry.get("id") for entry in previous.edits_log}
    problems = [f"{r.source or 'edit'}: id: {r.id!r} is already an edit of {previous.path}; give this edit "
                "an id of its own (an edit without an id is named <file name>:<line>, or <file name>:<n> for the "
                "n-th record of a JSON array)"
                for r in records if r.id in held]
    if problems:
        raise InputProblems(problems)


def _check_target(target: Path, previous: Delta | None, overwrite: bool) -> None:
    """Refuse now, not after the training, to write where save_delta would refuse to (that the
    location is writable at all was checked before the lock was taken)."""
    if not target.exists():
        if backup_path(target).exists():
            raise BadInputError(interrupted_write_message(target))
        return
    if previous is not None and target.resolve() == Path(previous.path).resolve():
        return  # appending in place
    if not target.is_dir():
        raise BadInputError(f"{target} exists and is not a directory: give another out",
                            cli=f"{target} exists and is not a directory: pass --out with another path")
    if not overwrite:
        raise BadInputError(f"{target} already exists: pass delta={str(target)!r} to continue editing it, "
                            "another out to write elsewhere, or overwrite=True to replace it",
                            cli=f"{target} already exists: pass --delta {target} to continue editing it, "
                                "--out DIR to write elsewhere, or --force to replace it")
    if not (target / CONFIG_FILE).is_file() and any(target.iterdir()):
        not_delta = f"{target} is a non-empty folder that is not a wiseedit delta; refusing to replace it"
        raise BadInputError(f"{not_delta} even with overwrite=True: give another out",
                            cli=f"{not_delta} even with --force: pass --out with another path")

