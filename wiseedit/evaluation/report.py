"""The results of an evaluation as one JSON document (``results.json``), its per-edit samples, and the
identities that make a result reproducible.

``results.json`` (``format`` "wiseedit-eval/1"; keys sorted, 2-space indent):

- ``metrics``: ``{method: {T: {"blocks", "edits", rel, gen, loc, port, rel_generated, ppl, ood,
  "per_block": [{"block", "n", <figures>}, ...]}}}`` (T as a string key; a figure is null where the
  suite does not measure it; see :mod:`wiseedit.evaluation.protocol`), and ``"by_kind"``
  (``{"port:<kind>" / "loc:<kind>": mean}``) where the probes carry kinds (KnowEdit);
- ``config``: suite, methods, options (per method), T, limit, seed, mode (or, for a delta: its path,
  method and edit count); ``config_hash``: sha256 of config + data + model identity (what resuming
  compares);
- ``model``: name, fingerprint (of the base weights), model_type, dtype;
- ``data``: suite, kind, number of edits, sha256 of the edit list as canonical JSON;
- ``versions`` (wiseedit, torch, transformers); ``git``: ``git rev-parse HEAD`` of the wiseedit
  checkout, or null when wiseedit is not run from a git checkout;
- ``date``: when the document was written (ISO 8601, UTC);
- ``timing``: ``{method: {T: {"seconds_per_edit", "per_block": [...]}}}``.

Two runs with the same seed and inputs give the same document except ``date`` and ``timing`` (wall-clock
measurements, which vary from run to run).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Sequence

from wiseedit.artifacts.atomic import atomic_write_text
from wiseedit.edits.record import EditRecord
from wiseedit.evaluation.protocol import FIGURES, BlockResult, summarize
from wiseedit.evaluation.store import RESULTS_FILE, SAMPLES_FILE, sha256_of

FORMAT = "wiseedit-eval/1"
VARYING_KEYS = ("date", "timing")  # the only keys two identical runs may disagree on


def edits_identity(edits: Sequence[EditRecord]) -> str:
    """sha256 of the edit list as canonical JSON (native form plus layout-specific extras)."""
    return sha256_of([{**e.to_json(), "extra": e.extra} for e in edits])


def data_identity(suite: str, kind: str, edits: Sequence[EditRecord]) -> dict:
    return {"suite": suite, "kind": kind, "edits": len(edits), "sha256": edits_identity(edits)}


def model_identity(base) -> dict:
    """Name, weights fingerprint, architecture and dtype of a loaded base model (`LoadedModel`)."""
    from wiseedit.session import base_name

    model = base.model
    return {"name": base_name(base.source), "fingerprint": base.fingerprint,
            "model_type": getattr(model.config, "model_type", None), "dtype": str(model.dtype).removeprefix("torch.")}


def versions() -> dict:
    out = {}
    for package in ("wiseedit", "torch", "transformers"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def git_commit() -> str | None:
    """The commit of the git checkout wiseedit is imported from (None if it is not one, e.g. an
    installed wheel, or git is missing). Only read-only git commands are run."""
    package = Path(__file__).resolve().parents[1]
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=package,
                                 capture_output=True, timeout=10)
        if tracked.returncode != 0:  # not tracked: a venv inside someone else's repository, say
            return None
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and commit else None


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EvalReport:
    """What an evaluation produced: the ``results.json`` document, the per-edit samples, and whether
    this is the main process (the only one that prints and writes)."""

    document: dict
    samples: list[dict] = field(default_factory=list, repr=False)
    is_main: bool = True

    @property
    def mode(self) -> str:
        return self.document["config"].get("mode", "lifelong")

    def rows(self) -> list[dict]:
        """One summary row per (method, T), timing included: what the table and ``--json`` show."""
        out = []
        for method, per_T in self.document["metrics"].items():
            for T, figures in per_T.items():
                row = {"method": method, "T": int(T), "blocks": figures["blocks"], "edits": figures["edits"],
                       **{k: figures[k] for k in FIGURES}, **(figures.get("by_kind") or {})}
                row["seconds_per_edit"] = self.document["timing"][method][T]["seconds_per_edit"]
                out.append(row)
        return out

    def to_json(self) -> dict:
        """The ``--json`` document: ``results.json`` plus the summary rows."""
        return {**self.document, "rows": self.rows()}

    def write(self, folder: Path, samples: bool = False) -> list[Path]:
        """Write ``results.json`` (and ``samples.jsonl``) into `folder`, atomically; returns the paths."""
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / RESULTS_FILE]
        atomic_write_text(written[0], json.dumps(self.document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        if samples:
            written.append(folder / SAMPLES_FILE)
            # keys in insertion order (id, method, T, block, figures): one edit per line, read by eye too
            atomic_write_text(written[1], "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in self.samples))
        return written


def build_report(*, config: dict, model: dict, data: dict, config_hash: str,
                 results: Sequence[tuple[str, int, BlockResult]], is_main: bool = True) -> EvalReport:
    """The report of `results`, (method, T, block result) in run order: per-T means over blocks,
    per-block figures, timing apart, and one sample line per edit of every block."""
    metrics: dict[str, dict] = {}
    timing: dict[str, dict] = {}
    samples = []
    grouped: dict[tuple[str, int], list[BlockResult]] = {}
    for method, T, result in results:
        grouped.setdefault((method, T), []).append(result)
        samples += [{"id": s["id"], "method": method, "T": T, "block": result.block, **s} for s in result.samples]
    for (method, T), blocks in grouped.items():
        summary = summarize(blocks)
        metrics.setdefault(method, {})[str(T)] = {
            "blocks": summary["blocks"], "edits": summary["edits"], **{k: summary[k] for k in FIGURES},
            "per_block": [{"block": b.block, "n": b.n, **{k: getattr(b, k) for k in FIGURES}} for b in blocks]}
        if summary["by_kind"] is not None:
            metrics[method][str(T)]["by_kind"] = summary["by_kind"]
        timing.setdefault(method, {})[str(T)] = {
            "seconds_per_edit": summary["seconds_per_edit"], "per_block": [b.seconds_per_edit for b in blocks]}
    document = {"format": FORMAT, "config": config, "config_hash": config_hash, "model": model, "data": data,
                "versions": versions(), "git": git_commit(), "metrics": metrics, "timing": timing,
                "date": utc_now()}
    return EvalReport(document, samples, is_main)
