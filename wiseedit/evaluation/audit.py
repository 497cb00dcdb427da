"""Evaluating a saved delta before shipping it: ``wiseedit eval --delta DIR``.

The edits are those of the delta's audit log (``edits.jsonl``, every edit the model was told, in
order); they are measured on the base model with the delta attached, which is the model a user gets.
Loc compares with the base model itself: its predictions on the locality probes are taken before the
delta is attached. The report has one row: the delta's method, T = its number of edits (all applied
one after another to one model, as in the lifelong protocol), one block.
"""

from __future__ import annotations

from pathlib import Path

from wiseedit.artifacts import EDITS_FILE, Delta, check_delta_base, load_delta
from wiseedit.chat import ChatFormat
from wiseedit.artifacts.lock import writing
from wiseedit.edits import EditRecord, to_edit_record
from wiseedit.errors import BadInputError, InputProblems
from wiseedit.evaluation.protocol import BlockResult, base_locality_predictions, figures, measure
from wiseedit.evaluation.report import EvalReport, build_report, data_identity, model_identity
from wiseedit.evaluation.runner import LogFn
from wiseedit.evaluation.store import RunStore, sha256_of
from wiseedit.models import DType, load_base
from wiseedit.session import attach


def audit_edits(delta: Delta) -> list[EditRecord]:
    """The edits of `delta`'s audit log as EditRecords (``seq`` and ``applied`` stay in `extra`)."""
    problems: list[str] = []
    where = Path(delta.path) / EDITS_FILE
    records = [to_edit_record(line, where=f"{where}:{i}", default_id=f"edits:{i}", problems=problems)
               for i, line in enumerate(delta.edits_log, start=1)]
    if problems:
        raise InputProblems(problems)
    if not records:
        raise BadInputError(f"delta {delta.path} holds no edits to evaluate")
    return [r for r in records if r is not None]


def evaluate_delta(delta: str | Path, *, model: str | None = None, output_path: str | Path | None = None,
                   force: bool = False, log_samples: bool = False, device: str = "auto",
                   dtype: DType = "auto", log: LogFn | None = None) -> EvalReport:
    """Measure the edits of `delta`'s audit log on `model` (default: the base the delta records) with
    the delta attached, Loc against the same model without it. With `output_path`, ``results.json``
    (and ``samples.jsonl`` with `log_samples`) is written there, as :func:`~wiseedit.evaluation.runner.evaluate`
    does."""
    saved = load_delta(Path(delta))
    edits = audit_edits(saved)
    chat = ChatFormat.from_json(saved.config.get("chat_template"))  # as the delta was made
    config = {"mode": "delta", "delta": str(Path(saved.path).resolve()), "method": saved.method,
              "edits": len(edits), "chat_template": chat.mode}
    data = data_identity(f"{saved.path}/{EDITS_FILE}", "qa", edits)
    folder = Path(output_path) if output_path is not None else None
    if folder is not None:
        RunStore(folder, {"config": config, "data": data}).check(force)

    with writing(folder, log=log):  # one writer per output folder, as evaluate()
        return _evaluate_delta_locked(saved, edits, chat, config, data, folder, model, force, log_samples,
                                      device, dtype, log)


def _evaluate_delta_locked(saved: Delta, edits: list[EditRecord], chat: ChatFormat, config: dict, data: dict,
                           folder: Path | None,
                           model: str | None, force: bool, log_samples: bool, device: str, dtype: DType,
                           log: LogFn | None) -> EvalReport:
    """:func:`evaluate_delta` once the output folder's writer lock is held."""
    name = model if model is not None else saved.config["base_model_name_or_path"]
    if log:
        log(f"loading model {name}")
    base = load_base(name, device=device, dtype=dtype)
    check_delta_base(saved, base.fingerprint, base.source.name, base.model)  # before any work on a base it does not fit
    identity = {**model_identity(base), "chat_template": chat.template}
    run_identity = {"config": config, "data": data,
                    "model": {k: identity[k] for k in ("fingerprint", "dtype", "chat_template")}}
    edits = chat.records(base.tokenizer, edits)
    if folder is not None:
        store = RunStore(folder, run_identity)
        store.check(force)
        store.prepare(force)
    if log:
        log(f"unedited predictions on the locality probes of {len(edits)} edits")
    base_loc = base_locality_predictions(base.model, base.tokenizer, edits)
    if log:
        log(f"attaching {saved.method} delta {saved.path} and measuring")
    method = attach(base, saved)
    config = {**config, "options": {saved.method: method.settings()}}  # every setting the delta runs with
    try:
        samples = measure(base.model, base.tokenizer, method, edits, base_loc)["samples"]
    finally:
        method.detach()
        base.model.wiseedit = None
    # no edit is applied here, so there is no editing time to report
    result = BlockResult(T=len(edits), block=0, n=len(edits), seconds_per_edit=None, samples=samples,
                         **figures(samples))
    report = build_report(config=config, model=identity, data=data, config_hash=sha256_of(run_identity),
                          results=[(saved.method, len(edits), result)])
    if folder is not None:
        report.write(folder, samples=log_samples)
    return report
