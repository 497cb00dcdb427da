"""The lifelong editing protocol of the WISE paper (docs/evaluation.md).

For a given T the suite is cut into consecutive blocks of T edits. Each block starts from the base
model: the T edits are applied one after another, *then* every edit of the block is measured on the
final model, and the method is detached (the model is the base again). The figures of a T are the
means over its blocks. Loc compares with the predictions of the unedited model, computed once before
any edit.

``evaluate_each_edit`` (and ``evaluate_block(..., each_edit=True)``) is the other, weaker protocol
(measure an edit right after applying it), which hides forgetting; it exists only under that name.

What is measured depends on the suite's kind (:data:`wiseedit.evaluation.suites.SuiteKind`):

- every kind: ``rel`` (teacher-forced token accuracy on prompt + target), ``rel_generated`` (greedy
  decoding), ``loc`` (agreement with the unedited model), ``gen`` / ``port`` when the edits carry
  rephrases / portability probes;
- ``hallucination``: also ``ppl``, the perplexity of the target (the paper's "Rel." for this suite;
  lower is better), from the same forward pass as ``rel``;
- ``temporal``: also ``ood``, the fraction of edits whose out-of-distribution probe is generalised:
  the mean NLL of the target after ``extra["ood_rephrase"]`` (the pairing WISE's run script uses:
  ood_rephrase as the prompt, target_new as its continuation) is below -ln(0.8).

Where the probes carry a kind (KnowEdit: Reasoning, Subject_Aliasing, ...; Relation_Specificity,
Forgetfulness), ``by_kind`` also gives the mean of ``loc`` and ``port`` per kind, keyed
``"port:<kind>"`` / ``"loc:<kind>"``, and each sample lists its probes' kinds (``port_kind``,
``loc_kind``) beside their values.

Per-edit values are rounded to 6 decimals, so that a figure does not depend on the last bits of a
float sum (thread count, batch composition).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Callable, Sequence

from wiseedit.edits.record import EditRecord
from wiseedit.evaluation import metrics
from wiseedit.methods.base import EditingMethod
from wiseedit.registry import method_class

#: The figures of a block, in table order (each a mean; None when the suite does not measure it).
FIGURES: tuple[str, ...] = ("rel", "gen", "loc", "port", "rel_generated", "ppl", "ood")
DIGITS = 6  # per-edit values and means are rounded to this many decimals


@dataclass
class BlockResult:
    """The figures of one block of T edits."""

    T: int
    block: int
    n: int                  # edits in the block
    rel: float              # teacher-forced reliability
    gen: float | None       # teacher-forced generalisation (None: no rephrases in the data)
    loc: float | None       # agreement with the unedited model on locality probes
    port: float | None      # teacher-forced portability
    rel_generated: float    # greedy decoding of len(target) tokens compared with the target
    seconds_per_edit: float | None  # time to apply the edits (None: nothing was applied)
    ppl: float | None = None  # hallucination: perplexity of the target (lower is better)
    ood: float | None = None  # temporal: fraction of OOD probes generalised (loss < -ln 0.8)
    by_kind: dict | None = None  # {"port:<kind>" / "loc:<kind>": mean} where probes have kinds, else None
    samples: list[dict] = field(default_factory=list, repr=False)

    def to_json(self, with_samples: bool = False) -> dict:
        out = asdict(self)
        if not with_samples:
            out.pop("samples")
        return out

    @classmethod
    def from_json(cls, data: dict) -> "BlockResult":
        """The inverse of :meth:`to_json` (samples included when present)."""
        return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})


def _mean(values: Sequence[float]) -> float | None:
    return round(fmean(values), DIGITS) if values else None


def _r(value: float) -> float:
    return round(float(value), DIGITS)


def base_locality_predictions(model, tokenizer, edits: Sequence[EditRecord]) -> dict[str, list[list[int]]]:
    """The unedited model's argmax on every locality probe of `edits`, keyed by edit id."""
    probes = [(e.id, (p.prompt, p.answer)) for e in edits for p in e.locality]
    preds = metrics.argmax_predictions(model, tokenizer, [pair for _, pair in probes]) if probes else []
    out: dict[str, list[list[int]]] = {}
    for (edit_id, _), pred in zip(probes, preds):
        out.setdefault(edit_id, []).append(pred)
    return out


def _grouped(index: Sequence[int], values: Sequence[float], n: int) -> list[list[float]]:
    """Values of flattened (edit index, value) pairs, regrouped per edit."""
    out: list[list[float]] = [[] for _ in range(n)]
    for i, v in zip(index, values):
        out[i].append(_r(v))
    return out


def figures(samples: Sequence[dict]) -> dict:
    """Block figures from per-edit samples: rel, rel_generated and ppl are means over edits; gen, loc,
    port and ood means over all probes (an edit with two rephrases weighs twice in gen)."""
    def flat(key):
        return [v for s in samples for v in s.get(key) or []]

    return {"rel": _mean([s["rel"] for s in samples]), "gen": _mean(flat("gen")), "loc": _mean(flat("loc")),
            "port": _mean(flat("port")), "rel_generated": _mean([s["rel_generated"] for s in samples]),
            "ppl": _mean([s["ppl"] for s in samples if s.get("ppl") is not None]), "ood": _mean(flat("ood")),
            "by_kind": _by_kind(samples)}


def _by_kind(samples: Sequence[dict]) -> dict | None:
    """Means of loc and port per probe kind (``"port:Reasoning": 0.5``), over all probes of that kind;
    None when no probe has a kind."""
    groups: dict[str, list[float]] = {}
    for figure in ("port", "loc"):
        for s in samples:
            for value, kind in zip(s.get(figure) or [], s.get(f"{figure}_kind") or []):
                if kind is not None:
                    groups.setdefault(f"{figure}:{kind}", []).append(value)
    return {key: _mean(values) for key, values in groups.items()} or None


def measure(model, tokenizer, method, edits: Sequence[EditRecord],
            base_loc: dict[str, list[list[int]]], kind: str = "qa") -> dict:
    """Rel, Gen, Loc, portability, the generation-based Rel and the figures of `kind` (see the module
    docstring) of `edits` on the model as it is now, with per-edit samples."""
    n = len(edits)
    main = metrics.score_pairs(model, tokenizer, [(e.prompt, e.target) for e in edits], method)
    gen_pairs = [(i, (r, e.target)) for i, e in enumerate(edits) for r in e.rephrase]
    gen = metrics.token_accuracy(model, tokenizer, [p for _, p in gen_pairs], method) if gen_pairs else []
    port_pairs = [(i, (p.prompt, p.answer)) for i, e in enumerate(edits) for p in e.portability]
    port = metrics.token_accuracy(model, tokenizer, [p for _, p in port_pairs], method) if port_pairs else []
    loc_pairs = [(i, (p.prompt, p.answer)) for i, e in enumerate(edits) for p in e.locality]
    after = metrics.argmax_predictions(model, tokenizer, [p for _, p in loc_pairs], method) if loc_pairs else []
    before = [pred for e in edits for pred in base_loc.get(e.id, [])]
    loc = metrics.agreement(before, after) if loc_pairs else []
    generated = metrics.generation_accuracy(model, tokenizer, [(e.prompt, e.target) for e in edits], method)
    ood_pairs = [(i, (e.extra["ood_rephrase"], e.target)) for i, e in enumerate(edits)
                 if kind == "temporal" and isinstance(e.extra.get("ood_rephrase"), str)]
    ood_loss = metrics.answer_loss(model, tokenizer, [p for _, p in ood_pairs], method) if ood_pairs else []
    ood = [1.0 if metrics.ood_generalized(loss) else 0.0 for loss in ood_loss]
    kinds = {"port_kind": [[p.kind for p in e.portability] for e in edits],
             "loc_kind": [[p.kind for p in e.locality] for e in edits]}

    per_gen = _grouped([i for i, _ in gen_pairs], gen, n)
    per_loc = _grouped([i for i, _ in loc_pairs], loc, n)
    per_port = _grouped([i for i, _ in port_pairs], port, n)
    per_ood = _grouped([i for i, _ in ood_pairs], ood, n)
    samples = [{"id": e.id, "rel": _r(main[i].accuracy), "rel_generated": _r(generated[i]),
                "gen": per_gen[i], "loc": per_loc[i], "port": per_port[i],
                "ppl": _r(math.exp(main[i].mean_nll)) if kind == "hallucination" else None,
                "ood": per_ood[i]} for i, e in enumerate(edits)]
    for key, per_edit in kinds.items():  # only where some probe has a kind: other samples stay as they were
        if any(k is not None for ks in per_edit for k in ks):
            for sample, ks in zip(samples, per_edit):
                sample[key] = ks
    return {**figures(samples), "samples": samples}


def evaluate_block(model, tokenizer, method_name: str, options: dict | None, edits: Sequence[EditRecord],
                   base_loc: dict[str, list[list[int]]], T: int, block: int,
                   progress: Callable[[int, int], None] | None = None, *, kind: str = "qa",
                   each_edit: bool = False, method: EditingMethod | None = None) -> BlockResult:
    """Apply `edits` one after another with a fresh method, measure them all, detach.

    With `each_edit`, each edit is measured right after it is applied instead (the weaker protocol
    that hides forgetting; see the module docstring). ``seconds_per_edit`` counts applying only.
    `method`: an attached `method_name` method without edits to use instead of creating one.
    """
    if method is None:
        method = method_class(method_name).create(model, tokenizer, dict(options or {}))
    seconds, samples = 0.0, []
    try:
        if each_edit:
            for i, edit in enumerate(edits):
                start = time.perf_counter()
                method.apply([edit])
                seconds += time.perf_counter() - start
                samples += measure(model, tokenizer, method, [edit], base_loc, kind)["samples"]
                if progress:
                    progress(i + 1, len(edits))
        else:
            start = time.perf_counter()
            method.apply(list(edits), progress)
            seconds = time.perf_counter() - start
            samples = measure(model, tokenizer, method, edits, base_loc, kind)["samples"]
    finally:
        method.detach()
    return BlockResult(T=T, block=block, n=len(edits), seconds_per_edit=round(seconds / len(edits), 4),
                       samples=samples, **figures(samples))


def blocks_of(edits: Sequence[EditRecord], T: int) -> list[list[EditRecord]]:
    """Consecutive blocks of T edits (the last, shorter one dropped unless it is the only one)."""
    blocks = [list(edits[i:i + T]) for i in range(0, len(edits), T)]
    if len(blocks) > 1 and len(blocks[-1]) < T:
        blocks.pop()
    return blocks


def coverage_note(count: int, T: int) -> str | None:
    """What :func:`blocks_of` does with `count` edits at `T` when it is not "count / T full blocks", in
    words for the log; None when every edit is measured in full blocks."""
    if count < T:
        return f"T={T}: only {count} edit(s), measured as one block of {count}"
    if count % T:
        return (f"T={T}: {count} edits make {count // T} block(s) of {T}; the last {count % T} are not "
                "measured at this T")
    return None


def summarize(results: Sequence[BlockResult]) -> dict:
    """Means over blocks of one T."""
    def avg(key):
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        return _mean(values)

    kinds: dict[str, list[float]] = {}
    for r in results:
        for key, value in (r.by_kind or {}).items():
            if value is not None:
                kinds.setdefault(key, []).append(value)
    return {"T": results[0].T, "blocks": len(results), "edits": sum(r.n for r in results),
            **{k: avg(k) for k in (*FIGURES, "seconds_per_edit")},
            "by_kind": {key: _mean(values) for key, values in kinds.items()} or None}


def evaluate_each_edit(model, tokenizer, method_name: str, options: dict | None,
                       edits: Sequence[EditRecord], base_loc: dict[str, list[list[int]]],
                       kind: str = "qa") -> dict:
    """The *evaluate-right-after-each-edit* protocol over all `edits` with one method (no reset):
    hides forgetting; for comparison only. Returns the figures (means)."""
    result = evaluate_block(model, tokenizer, method_name, options, edits, base_loc, len(edits), 0,
                            kind=kind, each_edit=True)
    return {k: getattr(result, k) for k in FIGURES}
