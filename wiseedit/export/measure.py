"""Rel and Loc of a model about to be exported, measured the way the evaluation protocol does.

Rel: teacher-forced token accuracy on the delta's own edits (prompt -> target), from ``edits.jsonl``.
Loc: agreement of the model's teacher-forced argmax with the unedited base model's on locality probes:
the edits' own ``locality`` probes when they have any, else a fixed neutral set (WISE's default
irrelevant pool, each row split at its last space into prompt and answer), so a figure is always given
and means the same thing from one export to the next. When edits carry no irrelevant row WISE trains
its router to ignore rows of that same pool, so for a routed WISE model the fallback Loc is optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from wiseedit.evaluation.metrics import agreement, argmax_predictions, token_accuracy
from wiseedit.data.irrelevant import default_pool

Pair = tuple[str, str]
ProbeSource = Literal["edits", "default-pool"]


@dataclass(frozen=True)
class Figures:
    """Mean Rel and Loc of one model, each in [0, 1]."""

    rel: float
    loc: float

    def to_json(self) -> dict:
        return {"rel": self.rel, "loc": self.loc}


@dataclass(frozen=True)
class Probes:
    """What is measured: the edits as (prompt, target) and the locality probes as (prompt, answer)."""

    edits: list[Pair]
    locality: list[Pair]
    source: ProbeSource  # where the locality probes came from


@dataclass(frozen=True)
class ExportMetrics:
    """Figures of the routed (delta attached) model and, for a merged export, of the merged weights."""

    routed: Figures
    merged: Figures | None
    num_edits: int
    num_probes: int
    probe_source: ProbeSource

    def to_json(self) -> dict:
        return {"routed": self.routed.to_json(), "merged": self.merged.to_json() if self.merged else None,
                "num_edits": self.num_edits, "num_locality_probes": self.num_probes,
                "locality_probes": self.probe_source}


def probes_from_log(edits_log: Sequence[dict]) -> Probes:
    """The pairs to measure, from a delta's edit log (``Delta.edits_log``: native JSON edit entries)."""
    edits = [(e["prompt"], e["target"]) for e in edits_log]
    locality = [(p["prompt"], p["answer"]) for e in edits_log for p in e.get("locality", ())]
    if locality:
        return Probes(edits, list(dict.fromkeys(locality)), "edits")
    return Probes(edits, neutral_probes(), "default-pool")


def neutral_probes() -> list[Pair]:
    """The default irrelevant pool as (prompt, answer): ``"Q: ... A: seven"`` -> (``"Q: ... A:"``,
    ``"seven"``). Rows without a space (none in the shipped pool) are skipped."""
    pairs = []
    for row in default_pool():
        prompt, _, answer = row.rpartition(" ")
        if prompt and answer:
            pairs.append((prompt, answer))
    return pairs


def base_predictions(model, tokenizer, probes: Probes) -> list[list[int]]:
    """The unedited model's argmax on the locality probes: the reference Loc compares against."""
    return argmax_predictions(model, tokenizer, probes.locality)


def rel_and_loc(model, tokenizer, probes: Probes, reference: list[list[int]], method=None) -> Figures:
    """Rel and Loc of `model` (routed through `method` when given, so routing sees the prompt only)."""
    rel = token_accuracy(model, tokenizer, probes.edits, method=method)
    loc = agreement(reference, argmax_predictions(model, tokenizer, probes.locality, method=method))
    return Figures(rel=_mean(rel), loc=_mean(loc))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
