"""Meta-training items from edit records, and the LLM token batches the edit losses run on.

An item needs a reliability prompt, a paraphrase and an unrelated (locality) probe. An edit without a
``rephrase`` uses its prompt as the paraphrase (the generality loss then repeats the reliability loss,
and the "other query" sentinel loss asks that the prompt without its own statement falls back to the
sentinel); an edit without a locality probe is refused, since the locality losses have nothing to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.evaluation.batching import PairBatch, encode_pair, pad_token_id, right_padded
from wiseedit.recipe.networks import statement


@dataclass(frozen=True)
class TrainItem:
    """One edit as meta-training sees it."""

    prompt: str  # the reliability query
    target: str
    rephrases: tuple[str, ...]  # generality queries; (prompt,) when the edit has none
    locality: tuple[tuple[str, str], ...]  # unrelated (prompt, answer) probes
    subject: str = ""  # whom the edit is about ("": unknown), for look-alike batches
    relation: str = ""  # what it asks of the subject, for look-alike batches (see relation_of)

    @property
    def statement(self) -> str:
        return statement(self.prompt, self.target)


def train_items(edits: Sequence[EditRecord]) -> list[TrainItem]:
    """Meta-training items of `edits`; an edit without a locality probe is refused."""
    items = []
    for edit in edits:
        if not edit.locality:
            raise BadInputError(f"edit {edit.id!r} ({edit.source or 'train set'}) has no locality probe, "
                                "which RECIPE's meta-training needs")
        items.append(TrainItem(edit.prompt, edit.target, tuple(edit.rephrase) or (edit.prompt,),
                               tuple((p.prompt, p.answer) for p in edit.locality), edit.subject or "",
                               relation_of(edit)))
    return items


def relation_of(edit: EditRecord) -> str:
    """The edit's relation: its ``relation`` field where the data has one (the world's edits,
    CounterFact's ``relation_id``), else its prompt with the subject blanked ("{} works as a"), which
    names the relation for edits phrased from one template per relation."""
    relation = edit.extra.get("relation") or edit.extra.get("relation_id")
    if relation:
        return str(relation)
    return edit.prompt.replace(edit.subject, "{}") if edit.subject else edit.prompt


@dataclass(frozen=True)
class StepBatch:
    """The texts of one meta-training step: B items with one paraphrase and one probe drawn each."""

    statements: list[str]
    prompts: list[str]
    rephrases: list[str]
    targets: list[str]
    loc_prompts: list[str]
    loc_answers: list[str]


def draw_batch(items: Sequence[TrainItem], generator: torch.Generator) -> StepBatch:
    """Pick one paraphrase and one locality probe per item with `generator`."""
    rephrases, probes = [], []
    for item in items:
        rephrases.append(item.rephrases[int(torch.randint(len(item.rephrases), (), generator=generator))])
        probes.append(item.locality[int(torch.randint(len(item.locality), (), generator=generator))])
    return StepBatch([i.statement for i in items], [i.prompt for i in items], rephrases,
                     [i.target for i in items], [p for p, _ in probes], [a for _, a in probes])


def pair_batch(tokenizer, prompts: Sequence[str], answers: Sequence[str], device,
               memo: dict | None = None) -> PairBatch:
    """Right-padded ``prompt + " " + answer`` tokens, split as the evaluator splits them.

    `memo` (a dict owned by the caller) remembers each pair's tokens: a training run sees the same
    pairs every epoch, and tokenising them again would cost a fifth of a tiny model's step.
    """
    memo = {} if memo is None else memo
    encoded = []
    for pair in zip(prompts, answers):
        if pair not in memo:
            memo[pair] = encode_pair(tokenizer, *pair)
        encoded.append(memo[pair])
    return right_padded(encoded, pad_token_id(tokenizer)).to(device)
