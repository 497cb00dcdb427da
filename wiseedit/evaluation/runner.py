"""Evaluating editing methods on a suite: the library function behind ``wiseedit eval``.

One run = one base model, one suite (cut to its first `limit` edits), one or more methods, a list of
T. For every (method, T) the edits are cut into blocks of T (:func:`~wiseedit.evaluation.protocol.blocks_of`),
each block is edited from the base model and measured (:func:`~wiseedit.evaluation.protocol.evaluate_block`),
and the figures are averaged over blocks. The unedited model's locality predictions are computed
once, before any edit. Every block starts from the same state (base weights, a fresh method, torch
seeded with the run's seed), so a block's figures do not depend on which blocks ran before it: that
is what lets an interrupted run resume (:mod:`~wiseedit.evaluation.store`) and several processes
share the blocks (:mod:`~wiseedit.evaluation.processes`) with the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping, get_args

import torch

from wiseedit.chat import ChatFormat, ChatTemplateMode
from wiseedit.artifacts.lock import writing
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.evaluation.processes import Processes
from wiseedit.evaluation.protocol import (
    BlockResult,
    base_locality_predictions,
    blocks_of,
    coverage_note,
    evaluate_block,
)
from wiseedit.evaluation.report import EvalReport, build_report, data_identity, model_identity
from wiseedit.evaluation.store import RunStore, UnitKey, sha256_of
from wiseedit.evaluation.suites import open_suite
from wiseedit.methods.base import EditingMethod
from wiseedit.registry import METHOD_NAMES, method_class
from wiseedit.models import DType, load_base, resolve_model
from wiseedit.models.context import check_context
from wiseedit.models.loading import load_tokenizer

Mode = Literal["lifelong", "each-edit"]
DEFAULT_T: tuple[int, ...] = (1, 10, 100)
#: Methods with a ``seed`` setting, which the run's seed sets (the others draw no random numbers).
SEEDED_METHODS: tuple[str, ...] = ("wise", "wise-retrieve", "grace")
DEFAULT_TORCH_SEED = 0  # torch's seed before each block when the run has no seed

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class EvalProgress:
    """Where a run is: blocks and edits done out of those this process runs, and the current block."""

    blocks_done: int
    blocks_total: int
    edits_done: int
    edits_total: int
    label: str  # "grace T=10 block 3"


ProgressFn = Callable[[EvalProgress], None]


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate (everything that decides the figures, apart from the model and the data)."""

    suite: str = "world"  # a suite name (wiseedit.evaluation.suites.SUITE_NAMES) or an edit file
    methods: tuple[str, ...] = ("wise",)  # evaluated one after another, on the same model and edits
    options: Mapping[str, dict] = field(default_factory=dict)  # per method, its settings (--option)
    T: tuple[int, ...] = DEFAULT_T  # edits applied before measuring (the suite is cut into blocks of T)
    limit: int | None = None  # only the first `limit` edits of the suite (None: all)
    seed: int | None = None  # torch's seed per block and the `seed` of SEEDED_METHODS; None: their defaults
    mode: Mode = "lifelong"  # "each-edit": measure each edit right after applying it (hides forgetting)
    chat_template: ChatTemplateMode = "auto"  # prompts through the tokenizer's chat template if it has one

    def __post_init__(self) -> None:
        if not self.methods:
            raise BadInputError("no method to evaluate: give at least one (e.g. methods=('grace',))",
                                cli="no method to evaluate: give at least one (e.g. --method grace)")
        for name in self.methods:
            if name not in METHOD_NAMES:
                raise BadInputError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")
        if len(set(self.methods)) != len(self.methods):
            raise BadInputError(f"a method is listed twice in {','.join(self.methods)}")
        if not self.T or any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in self.T):
            raise BadInputError(f"T must be positive whole numbers of edits, got {list(self.T)}")
        if len(set(self.T)) != len(self.T):
            raise BadInputError(f"a T is listed twice in {list(self.T)}")
        if self.limit is not None and self.limit < 1:
            raise BadInputError(f"limit must be at least 1, got {self.limit}")
        if self.mode not in get_args(Mode):
            raise BadInputError(f"mode must be one of {', '.join(get_args(Mode))}, got {self.mode!r}")
        if self.chat_template not in get_args(ChatTemplateMode):
            raise BadInputError(f"chat_template must be one of {', '.join(get_args(ChatTemplateMode))}, "
                                f"got {self.chat_template!r}")
        for name, options in self.options.items():
            if name not in self.methods:
                raise BadInputError(f"options are given for {name}, which is not among the methods "
                                    f"evaluated ({', '.join(self.methods)})")
            if self.seed is not None and name in SEEDED_METHODS and "seed" in options:
                raise BadInputError(f"seed and options[{name!r}]['seed'] both set the seed of {name}: keep one",
                                    cli=f"--seed and --option seed=... both set the seed of {name}: keep one")
        for name in self.methods:
            method_class(name).check_options(self.method_options(name))

    def method_options(self, name: str) -> dict:
        """The settings `name` is created with: its options, plus the run's seed where it has one."""
        options = dict(self.options.get(name) or {})
        if self.seed is not None and name in SEEDED_METHODS:
            options["seed"] = self.seed
        return options

    def to_json(self) -> dict:
        return {"suite": self.suite, "methods": list(self.methods),
                "options": {m: dict(self.options[m]) for m in self.methods if self.options.get(m)},
                "T": list(self.T), "limit": self.limit, "seed": self.seed, "mode": self.mode,
                "chat_template": self.chat_template}


@dataclass(frozen=True)
class Unit:
    """One block of one (method, T): the unit of work that is resumed and shared between processes."""

    method: str
    T: int
    block: int
    edits: tuple[EditRecord, ...]

    @property
    def key(self) -> UnitKey:
        return (self.method, self.T, self.block)

    @property
    def label(self) -> str:
        return f"{self.method} T={self.T} block {self.block + 1}"


def plan(config: EvalConfig, edits: list[EditRecord]) -> list[Unit]:
    """Every unit of a run, in run order: methods, then T, then blocks."""
    return [Unit(method, T, b, tuple(block)) for method in config.methods for T in config.T
            for b, block in enumerate(blocks_of(edits, T))]


def evaluate(model: str, config: EvalConfig, *, output_path: str | Path | None = None, force: bool = False,
             log_samples: bool = False, device: str = "auto", dtype: DType = "auto",
             progress: ProgressFn | None = None, log: LogFn | None = None) -> EvalReport:
    """Evaluate `config` on base `model` and return the report.

    With `output_path`, every finished block is recorded there as it finishes and a rerun of the
    same evaluation skips the blocks already done; a folder holding another evaluation is refused
    (BadInputError) unless `force`, which starts over. ``results.json`` (and ``samples.jsonl`` with
    `log_samples`) is written there at the end. Under ``accelerate launch`` the blocks are shared
    between the processes; only the main one calls `progress` and `log` and writes the results.
    Evaluations into one `output_path` take turns (:func:`~wiseedit.artifacts.lock.writing`): a
    second one waits, then resumes from the blocks the first recorded.
    """
    suite = open_suite(config.suite)
    edits = suite.edits[:config.limit] if config.limit else list(suite.edits)
    data = data_identity(suite.name, suite.kind, edits)
    folder = Path(output_path) if output_path is not None else None
    if folder is not None:  # fail before loading the model when the config or data already differ
        RunStore(folder, {"config": config.to_json(), "data": data}).check(force)
    processes = Processes.detect(cpu=device == "cpu" or not torch.cuda.is_available())
    if not processes.is_main:
        progress, log = None, None
    # One evaluation at a time per folder (the main process holds the lock; the others follow it
    # through the barriers): a second one waits, then resumes from the blocks the first recorded.
    with writing(folder if processes.is_main else None, log=log):
        return _evaluate_locked(model, config, suite, edits, data, folder, force, log_samples, device, dtype,
                                processes, progress, log)


def _evaluate_locked(model: str, config: EvalConfig, suite, edits: list[EditRecord], data: dict,
                     folder: Path | None, force: bool, log_samples: bool, device: str, dtype: DType,
                     processes: Processes, progress: ProgressFn | None, log: LogFn | None) -> EvalReport:
    """:func:`evaluate` once the output folder's writer lock is held."""
    if processes.count > 1 and device in ("auto", "cuda"):  # one device per process, as accelerate assigns
        device = processes.device or device

    source = resolve_model(model)
    tokenizer = load_tokenizer(source)
    chat = ChatFormat.resolve(config.chat_template, tokenizer)
    edits = chat.records(tokenizer, edits)  # as the model sees them (data identity: the user's text)
    check_context(edits, tokenizer, source.path, model)
    if log:
        for note in filter(None, (coverage_note(len(edits), T) for T in config.T)):
            log(note)
        log(f"loading model {model}" + (" (prompts through its chat template)" if chat.applied else ""))
    base = load_base(model, device=device, dtype=dtype)
    identity = {**model_identity(base), "chat_template": chat.template}
    run_identity = {"config": config.to_json(), "data": data,
                    "model": {k: identity[k] for k in ("fingerprint", "dtype", "chat_template")}}
    store = RunStore(folder, run_identity, processes.index, processes.count) if folder is not None else None
    if store is not None:
        store.check(force)
    settings = _check_methods(base, config)
    if log:
        log(f"{suite.name}: {len(edits)} edits ({suite.kind}); unedited predictions on the locality probes")
    base_loc = base_locality_predictions(base.model, base.tokenizer, edits)

    done: dict[UnitKey, BlockResult] = {}
    if store is not None:
        if processes.is_main:
            store.prepare(force)
        processes.barrier()
        done = store.completed()
    units = plan(config, edits)
    todo = [u for u in units if u.key not in done]
    if log and done:
        log(f"resuming: {len(units) - len(todo)} of {len(units)} blocks already done in {folder}")
    if log and processes.count > 1:
        log(f"{processes.count} processes share {len(todo)} blocks")
    mine = processes.share(todo)
    fresh = _run_units(base, config, suite.kind, mine, base_loc, store, progress)
    for key, result in processes.gather([(u.key, r.to_json(with_samples=True)) for u, r in zip(mine, fresh)]):
        done.setdefault(tuple(key), BlockResult.from_json(result))

    report = build_report(config=_recorded_config(config, settings), model=identity, data=data, config_hash=sha256_of(run_identity),
                          results=[(u.method, u.T, done[u.key]) for u in units], is_main=processes.is_main)
    if folder is not None and processes.is_main:
        report.write(folder, samples=log_samples)
    processes.barrier()
    return report


def _run_units(base, config: EvalConfig, kind: str, units: list[Unit], base_loc: dict,
               store: RunStore | None, progress: ProgressFn | None) -> list[BlockResult]:
    """Run `units` in order, recording each in `store` as it finishes."""
    total_edits = sum(len(u.edits) for u in units)
    edits_done, results = 0, []

    def report(label: str, in_block: int = 0) -> None:
        if progress:
            progress(EvalProgress(len(results), len(units), edits_done + in_block, total_edits, label))

    last: dict[str, EditingMethod] = {}  # per method, the one of its previous block (detached)
    for unit in units:
        report(unit.label)
        torch.manual_seed(config.seed if config.seed is not None else DEFAULT_TORCH_SEED)
        options = config.method_options(unit.method)
        method = last[unit.method].fresh() if unit.method in last else None
        if method is None:
            method = method_class(unit.method).create(base.model, base.tokenizer, dict(options))
        last[unit.method] = method
        result = evaluate_block(
            base.model, base.tokenizer, unit.method, options, unit.edits, base_loc,
            unit.T, unit.block, lambda done, _total, label=unit.label: report(label, done),
            kind=kind, each_edit=config.mode == "each-edit", method=method)
        if store is not None:
            store.append(unit.key, result)
        results.append(result)
        edits_done += len(unit.edits)
        report(unit.label)
    if units:
        report("blocks")
    return results


def _recorded_config(config: EvalConfig, settings: dict[str, dict]) -> dict:
    """The ``config`` of ``results.json``: `config`, with ``options`` holding every method's full
    resolved settings and ``options_given`` what was asked for (the part that identifies the run)."""
    recorded = config.to_json()
    recorded["options_given"] = recorded.pop("options")
    return {**recorded, "options": settings}


def _check_methods(base, config: EvalConfig) -> dict[str, dict]:
    """Create (and detach) every method once with its settings, so that a bad option or a missing
    RECIPE checkpoint stops the run before any block, not hours into it; returns each method's
    resolved settings (:meth:`~wiseedit.methods.base.EditingMethod.settings`)."""
    settings = {}
    for name in config.methods:
        try:
            method = method_class(name).create(base.model, base.tokenizer, config.method_options(name))
        except BadInputError as error:
            raise BadInputError(f"method {name} cannot be created: {error}",
                                cli=f"method {name} cannot be created: {error.for_cli()}") from error
        settings[name] = method.settings()
        method.detach()
    return settings
