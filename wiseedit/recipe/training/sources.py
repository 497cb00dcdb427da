"""Where RECIPE's meta-training edits come from: a named train split, or an edit file.

Named splits:

- ``world-train``: :func:`~wiseedit.world.suite.world_edits` ``("train")``, 700 edits on people that
  ``wiseedit eval --suite world`` never edits;
- ``world-train-x4``: the same facts, each edited to 4 different objects (2,800 edits,
  :func:`~wiseedit.world.suite.object_variants`), so that the prompt network cannot tie an object to
  a person and must read it from the statement (with ``prompt_input="pooled"``, see docs/recipe.md);
- ``world-train-x4-invented``: world-train-x4 and the edits of 600 invented people (3,000 edits,
  :func:`~wiseedit.world.suite.invented_edits`): names the world does not have, drawn from its
  syllables, so that the retriever sees many more names than the 140 training people and learns to
  match a name whole, not by a shared syllable (docs/recipe.md). The base model knows nothing of
  them; the edit and locality losses need no true facts.
- ``world-train-x8-invented``: the same with each fact edited to 8 objects (5,600 + 3,000 edits):
  the prompt network then carries the object it reads to people it was not trained on better than
  with 4 (measured in docs/recipe.md, "Where Rel is lost").
- ``counterfact-train``: the shipped CounterFact train file (10,000 records, case ids disjoint from
  the counterfact suite's).

The evaluation suites are refused by name (``world``, ``world-eval``, ``counterfact``, ``zsre``,
``hallucination``, ``temporal``): a retriever meta-trained on the very statements and probes it is
then measured on would report leaked figures. A name wins over a file of the same name in the working
directory (write ``./world`` for the file), as for ``wiseedit eval --suite``.

Leaks through shared probes: counterfact-train shares some *texts* with the suite it prepares for
(3,033 records have a prompt, paraphrase or locality probe that the counterfact suite evaluates;
world-train shares none: its probes are about training people only). Those texts are removed from
the training items (a probe or paraphrase is dropped; a record whose own prompt is evaluated is
skipped), as the irrelevant pools of
:mod:`wiseedit.evaluation.suites` are. An edit file is taken as it is: choosing it is the user's call.

Every item needs a paraphrase (``rephrase``) and a locality probe: the generality and locality losses
have nothing to run on otherwise. Policy: a record lacking either is **skipped**, counted and named by
where it was read (``file:line``, ``file[index]`` for the shipped JSON arrays), so that a large train
file with a few incomplete rows still trains; fewer than 2 usable records is refused, listing them.
(The library function :func:`~wiseedit.recipe.training.loop.meta_train` is more lenient: it uses the prompt
when there is no paraphrase.) A record that cannot be read at all (no target, bad JSON, ...) stops
everything with ``file:line: field: what is wrong``, as for ``wiseedit edit``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import AbstractSet, Sequence, TextIO

from wiseedit.edits.reader import read_edits
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError, InputProblems

WORLD_TRAIN = "world-train"
WORLD_TRAIN_X4 = "world-train-x4"
WORLD_TRAIN_X4_INVENTED = "world-train-x4-invented"
WORLD_TRAIN_X8_INVENTED = "world-train-x8-invented"
INVENTED_PEOPLE = 600  # in world-train-x{4,8}-invented, beside the world's 140 training people
COUNTERFACT_TRAIN = "counterfact-train"
#: The train splits ``--data`` accepts by name.
TRAIN_SPLITS: tuple[str, ...] = (WORLD_TRAIN, WORLD_TRAIN_X4, WORLD_TRAIN_X4_INVENTED, WORLD_TRAIN_X8_INVENTED,
                                 COUNTERFACT_TRAIN)

#: Evaluation suites refused by name -> what to train on instead.
_EVALUATED = {
    "world": f"use --data {WORLD_TRAIN} (700 edits on people the world suite never edits)",
    "world-eval": f"use --data {WORLD_TRAIN} (700 edits on people the world suite never edits)",
    "counterfact": f"use --data {COUNTERFACT_TRAIN} (the CounterFact train file)",
    "counterfact-edit": f"use --data {COUNTERFACT_TRAIN} (the CounterFact train file)",
    "zsre": f"no ZsRE train split ships with wiseedit: give a file of ZsRE train records, or use --data "
            f"{COUNTERFACT_TRAIN}",
    "hallucination": "give a file of training records with paraphrases and locality probes",
    "temporal": "give a file of training records with paraphrases and locality probes",
}
#: The world's train splits -> (objects each training fact is edited to, whether invented people join).
_WORLD_SPLITS = {WORLD_TRAIN: (1, False), WORLD_TRAIN_X4: (4, False), WORLD_TRAIN_X4_INVENTED: (4, True),
                 WORLD_TRAIN_X8_INVENTED: (8, True)}
SHOWN_SKIPS = 10  # the log names this many skipped records; the JSON summary lists them all


@dataclass(frozen=True)
class Skipped:
    """A record left out of meta-training, and why."""

    where: str  # file:line (or file[index]) it was read from
    id: str
    reason: str  # "no rephrase", "no locality probe", ...

    def __str__(self) -> str:
        return f"{self.where} (id {self.id!r}): {self.reason}"

    def to_json(self) -> dict:
        return {"where": self.where, "id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class TrainData:
    """The edits meta-training runs on, with what was left out."""

    name: str  # a train split name, or the edit file as given
    edits: list[EditRecord]
    skipped: list[Skipped]
    dropped_texts: int  # paraphrases and probes removed because an evaluation suite measures them

    @property
    def sha256(self) -> str:
        """``sha256:<hex>`` of what training reads from each edit, in order: a resumed run must match."""
        digest = hashlib.sha256()
        for e in self.edits:
            item = [e.prompt, e.target, list(e.rephrase), [[p.prompt, p.answer] for p in e.locality]]
            digest.update(json.dumps(item, ensure_ascii=False).encode() + b"\n")
        return "sha256:" + digest.hexdigest()

    def identity(self) -> dict:
        """What a checkpoint records about its training data."""
        return {"name": self.name, "edits": len(self.edits), "skipped": len(self.skipped), "sha256": self.sha256}


def load_train_data(data: str, *, stdin: TextIO | None = None) -> TrainData:
    """The meta-training edits of `data`: a split of :data:`TRAIN_SPLITS`, or an edit file (``-``:
    `stdin`). Evaluation suites are refused by name (BadInputError, saying what to use instead)."""
    name = str(data).strip()
    if name in _EVALUATED:
        raise BadInputError(f"--data {name} is an evaluation suite: meta-training RECIPE on the edits and "
                            f"probes it is measured on would leak them into the retriever; {_EVALUATED[name]}")
    if name in _WORLD_SPLITS:
        from wiseedit.evaluation.suites import evaluated_prompts
        from wiseedit.world.suite import invented_edits, object_variants, world_edits

        objects, with_invented = _WORLD_SPLITS[name]
        records, evaluated = world_edits("train"), evaluated_prompts(world_edits("eval"))
        if objects > 1:
            records = object_variants(records, objects)
        if with_invented:
            records += invented_edits(INVENTED_PEOPLE)
    elif name == COUNTERFACT_TRAIN:
        from wiseedit.evaluation import suites

        evaluated = suites.evaluated_prompts(suites.shipped_records(suites.COUNTERFACT_EDIT, "counterfact"))
        evaluated |= suites.evaluated_prompts(suites.shipped_records(suites.ZSRE, "zsre"))
        records = suites.shipped_records(suites.COUNTERFACT_TRAIN, COUNTERFACT_TRAIN)
    else:
        records, evaluated = read_edits(name, stdin=stdin), set()
    return usable(name, records, evaluated)


def usable(name: str, records: Sequence[EditRecord], evaluated: AbstractSet[str] = frozenset()) -> TrainData:
    """`records` fit for meta-training: texts in `evaluated` removed, records lacking a paraphrase or a
    locality probe skipped; refused (InputProblems) when fewer than 2 are left."""
    kept, skipped, dropped = [], [], 0
    for record in records:
        if record.prompt in evaluated:
            skipped.append(Skipped(record.source or name, record.id, "its prompt is one an evaluation suite "
                                                                     "measures"))
            continue
        rephrase = tuple(r for r in record.rephrase if r not in evaluated)
        locality = tuple(p for p in record.locality if p.prompt not in evaluated)
        dropped += len(record.rephrase) - len(rephrase) + len(record.locality) - len(locality)
        missing = [what for what, value in (("rephrase", rephrase), ("locality probe", locality)) if not value]
        if missing:
            cut = " left after removing evaluated texts" if (record.rephrase and not rephrase) or (
                record.locality and not locality) else ""
            skipped.append(Skipped(record.source or name, record.id, f"no {' and no '.join(missing)}{cut}"))
            continue
        kept.append(replace(record, rephrase=rephrase, locality=locality))
    if len(kept) < 2:
        problems = [f"{s.where}: {s.reason} (RECIPE's meta-training needs a rephrase and a locality probe "
                    "per edit)" for s in skipped[:SHOWN_SKIPS]]
        more = len(skipped) - len(problems)
        raise InputProblems(problems + ([f"... and {more} more"] if more > 0 else []) + [
            f"{name}: {len(kept)} usable record(s) of {len(records)}; meta-training needs at least 2"])
    return TrainData(name, kept, skipped, dropped)
