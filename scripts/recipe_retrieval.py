"""What a RECIPE checkpoint retrieves once T edits are stored: the part of Rel / Gen / Loc that is the
retriever's and its gate's, apart from what the prompt vectors then do.

    python scripts/recipe_retrieval.py CHECKPOINT [--model world] [--suite world] [-T 1000] [--threads 1]
                                      [--option gate=cosine] [--option cosine_ratio=0.9]

The first T edits of the suite are stored, then every edit prompt, two rephrasings per edit and every
locality probe is looked up alone (:meth:`wiseedit.recipe.method.RecipeMethod.lookup`). Printed:

- ``first``: how often the query's top-1 stored edit is its own (edit prompts, rephrasings);
- ``retrieved``: how often that own edit also passes the gate (what Rel / Gen need), and for
  locality probes how often *any* edit does (each such probe is prefixed with a stranger's prompt);
- the same at offsets of the cut (a margin above the offset counts as a hit): how far moving the
  sentinel (or, with the default cosine gate, every edit's bar) would trade recall against locality.
  For the cosine gate these tables move the bar only; the sentinel's veto is left out of them (it
  rarely binds on a trained retriever), and counted in the line "at the gate";
- at matched recall: the offset at which a given share of edit prompts (then: of rephrasings) still
  retrieve their own edit, and what the other queries do there. This compares retrievers apart from
  where their cuts happen to sit: a better one lets fewer probes through at the same recall;
- locality by probe position (the world suite: 1 = the same person's other fact, 2 = another person),
  at the gate and at 90% recall, with the share of those probes whose retrieved edit is about the
  person the probe names (the rest retrieve another person's edit);
- a few probes that retrieve, with the edit they retrieve.
"""

from __future__ import annotations

import argparse
import math

import torch

from wiseedit.cli.common import parse_options
from wiseedit.evaluation.suites import open_suite
from wiseedit.models import load_base
from wiseedit.recipe.method import RecipeMethod

OFFSETS = {"sentinel": (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0),  # margins in units of q . k / sqrt(d_r)
           "cosine": (-0.05, -0.02, 0.0, 0.02, 0.05, 0.1)}  # margins in units of cosine
REPHRASINGS = 2  # per edit
RECALL_LEVELS = (0.95, 0.90, 0.85, 0.80)  # shares of edit prompts (rephrasings) retrieving their own edit
WHOSE_LEVEL = 0.90  # one of RECALL_LEVELS: where locality probes are also split by whose edit they retrieve


def rate(flags) -> str:
    flags = list(flags)
    return f"{sum(flags) / len(flags):.3f}" if flags else "-"


def names_subject(prompt: str, edit) -> bool:
    """Whether `prompt` names the person (subject) that `edit` is about: a probe that retrieves such an
    edit confuses two facts of one person; one that retrieves another's, two people. An edit without a
    subject names no one (False)."""
    return bool(edit.subject) and edit.subject in prompt


def offset_for_recall(own_margins: list[float], total: int, level: float) -> float | None:
    """The largest sentinel offset at which at least `level` of `total` queries still retrieve their own
    edit (more when margins tie), given the margins of those whose top-1 is their own (`own_margins`);
    None when fewer retrieve it."""
    needed = math.ceil(level * total - 1e-9)  # 1e-9: 0.95 x 1000 must not round up to 951
    if needed > len(own_margins) or needed == 0:
        return None
    return math.nextafter(sorted(own_margins, reverse=True)[needed - 1], -math.inf)  # hit: margin > offset


def checkpoint_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments the RECIPE diagnostic scripts share: a checkpoint, the base model, the suite, how
    many of its edits, and threads."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--model", default="world")
    parser.add_argument("--suite", default="world")
    parser.add_argument("-T", "--edits", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main() -> None:
    parser = checkpoint_parser(__doc__)
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--option", action="append", metavar="KEY=VALUE",
                        help="a RECIPE option, e.g. gate=cosine (as wiseedit's --option)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = load_base(args.model, device="cpu")
    edits = open_suite(args.suite).edits[: args.edits]
    method = RecipeMethod.create(base.model, base.tokenizer, {**parse_options(args.option),
                                                              "checkpoint": args.checkpoint})
    method.apply(edits)

    own = method.lookup([e.prompt for e in edits])
    rephrased = [(e.id, r) for e in edits for r in e.rephrase[:REPHRASINGS]]
    reph = method.lookup([r for _, r in rephrased])
    probes = [(pos, p.prompt) for e in edits for pos, p in enumerate(e.locality, start=1)]
    loc = method.lookup([p for _, p in probes])

    gate = method.config.gate
    # each kind of query that should retrieve its own edit: (lookups, the id each should retrieve)
    should = {"edit prompt": (own, [e.id for e in edits]), "rephrasing": (reph, [i for i, _ in rephrased])}

    def retrieved(kind: str, offset: float) -> str:
        """How often queries of `kind` retrieve their own edit with a margin above `offset`."""
        results, ids = should[kind]
        return rate(r.id == i and r.margin > offset for r, i in zip(results, ids))

    def probes_at(offset: float) -> str:
        return rate(r.margin > offset for r in loc)

    print(f"{args.checkpoint}: {len(edits)} edits of {args.suite} stored, gate {gate}")
    print(f"first:     edit prompt {retrieved('edit prompt', -math.inf)}, "
          f"rephrasing {retrieved('rephrasing', -math.inf)}")
    passed = {kind: rate(r.id == i and r.hit for r, i in zip(*should[kind])) for kind in should}
    print(f"at the gate: edit prompt {passed['edit prompt']}, rephrasing {passed['rephrasing']}, "
          f"locality probe {rate(r.hit for r in loc)}")
    print("| offset of the cut | edit prompt retrieved | rephrasing retrieved | locality probe retrieves |")
    print("| --- | --- | --- | --- |")
    for offset in OFFSETS[gate]:
        print(f"| {offset:+g} | {retrieved('edit prompt', offset)} | {retrieved('rephrasing', offset)} "
              f"| {probes_at(offset)} |")
    # matched on edit prompts (Rel), then on rephrasings (Gen: with gate=cosine an edit prompt always
    # clears its own bar, so matching on edit prompts says little there)
    at_recall = {}
    for matched, other in (("edit prompt", "rephrasing"), ("rephrasing", "edit prompt")):
        print(f"| {matched}s retrieving | at offset | {other} retrieved | locality probe retrieves |")
        print("| --- | --- | --- | --- |")
        results, ids = should[matched]
        margins = [r.margin for r, i in zip(results, ids) if r.id == i]
        for level in RECALL_LEVELS:
            offset = offset_for_recall(margins, len(ids), level)
            if matched == "edit prompt":
                at_recall[level] = offset
            if offset is None:
                print(f"| {level:.2f} | not reached | - | - |")
                continue
            print(f"| {level:.2f} | {offset:+.3f} | {retrieved(other, offset)} | {probes_at(offset)} |")
    by_id = {e.id: e for e in edits}
    whose_cut = at_recall[WHOSE_LEVEL]
    cuts = {"the gate": lambda r: r.hit, f"{WHOSE_LEVEL:.0%} recall": lambda r: r.margin > whose_cut}
    for position in sorted({pos for pos, _ in probes}):
        asked = [(p, r) for (pos, p), r in zip(probes, loc) if pos == position]
        cells = []
        for name, passes in cuts.items():
            if name == "the gate" or whose_cut is not None:
                whose = [names_subject(p, by_id[r.id]) for p, r in asked if passes(r)]
                cells.append(f"{len(whose) / len(asked):.3f} at {name} (an edit of the person it names: {rate(whose)})")
        print(f"locality probe {position} retrieves " + "; ".join(cells))
    shown = [(p, r) for (_, p), r in zip(probes, loc) if r.hit][: args.examples]
    for prompt, found in shown:
        edit = by_id[found.id]
        print(f"  {prompt!r} -> {edit.prompt} {edit.target} (margin {found.margin:.2f})")


if __name__ == "__main__":
    main()
