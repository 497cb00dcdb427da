"""Which training edits make up each meta-training step's batch.

The retrieval losses compare each query with the other statements of its batch, so the batch decides
which mistakes training can see. ``random`` (the paper): an epoch-wise shuffle cut into batches.
``lookalike`` (ours): each batch is made of groups; a group is one edit from the same shuffle (its
*anchor*) and ``GROUP_SIZE - 1`` edits of the anchor's relation about the people whose names look most
like the anchor's subject (character trigrams, drawn from the ``NEAREST`` nearest). A query can then
only find its own statement by telling the names apart, which is where a retriever trained on random
batches fails (docs/recipe.md, "Look-alike batches"). Edits of one (subject, relation), such as one
fact edited to several objects, never share a batch: their queries are the same.

Both are deterministic in (seed, step): epoch e's shuffle comes from (seed, e), a step's draws from
(seed, step), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Callable, Sequence

import torch

from wiseedit.errors import BadInputError
from wiseedit.recipe.training.data import TrainItem

GROUP_SIZE = 4  # an anchor and 3 look-alikes
NEAREST = 12    # look-alike names drawn from this many nearest


def mixed_seed(seed: int, counter: int, stream: int) -> int:
    """A seed for (seed, counter, stream), distinct across streams and counters."""
    return (seed * 1_000_003 + counter) * 4 + stream


def _epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(count, generator=torch.Generator().manual_seed(mixed_seed(seed, epoch, 0))).tolist()


def random_batch(count: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The item indices of `step`: epoch-wise shuffles of `count` items cut into batches."""
    size = min(batch_size, count)
    epoch, slot = divmod(step, count // size)
    return _epoch_order(count, seed, epoch)[slot * size: (slot + 1) * size]


def name_trigrams(name: str) -> frozenset[str]:
    """The character trigrams of a name, lower-cased and padded at both ends."""
    padded = f"  {name.lower()} "
    return frozenset(padded[i:i + 3] for i in range(len(padded) - 2))


class LookalikeBatches:
    """Batches of look-alike groups over `items` (see the module docstring); call with (batch_size,
    seed, step) for the item indices of that step."""

    def __init__(self, items: Sequence[TrainItem]):
        # what makes two edits "the same question": (subject, relation); without a subject, the prompt
        self.keys = [(item.subject, item.relation) if item.subject else ("", item.prompt) for item in items]
        by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, key in enumerate(self.keys):
            by_key[key].append(i)
        self.distinct = len(by_key)  # at most this many edits fit in one batch
        people = sorted({subject for subject, _ in self.keys if subject})
        grams = {p: name_trigrams(p) for p in people}

        def nearest(person: str) -> list[str]:
            scored = sorted(((len(grams[person] & grams[q]) / len(grams[person] | grams[q]), q)
                             for q in people if q != person), reverse=True)  # ties: later name first
            return [q for _, q in scored[:NEAREST]]

        near = {p: nearest(p) for p in people}
        # per item: the edits of its relation about its nearest names, nearest first
        self.lookalikes = [[j for q in near.get(subject, ()) for j in by_key.get((q, relation), ())]
                           for subject, relation in self.keys]

    def __call__(self, batch_size: int, seed: int, step: int) -> list[int]:
        count = len(self.keys)
        anchors = max(1, min(batch_size, count) // GROUP_SIZE)
        epoch, slot = divmod(step, count // anchors)
        order = _epoch_order(count, seed, epoch)[slot * anchors: (slot + 1) * anchors]
        draws = torch.Generator().manual_seed(mixed_seed(seed, step, 3))
        picked, taken = [], set()

        def take(i: int) -> bool:
            if self.keys[i] in taken:
                return False
            picked.append(i)
            taken.add(self.keys[i])
            return True

        def fill(pool: list[int], wanted: int) -> None:
            for k in torch.randperm(len(pool), generator=draws).tolist():
                if len(picked) == wanted:
                    break
                take(pool[k])

        for anchor in order:
            if not take(anchor):
                continue
            fill(self.lookalikes[anchor], len(picked) + GROUP_SIZE - 1)
        while len(picked) < min(batch_size, self.distinct):  # too few look-alikes: fill with other edits
            take(int(torch.randint(count, (), generator=draws)))
        return picked[:batch_size]


def batch_sampler(how: str, items: Sequence[TrainItem]) -> Callable[[int, int, int], list[int]]:
    """The batches of a ``RecipeConfig.batches`` value over `items`: a function of (batch_size, seed,
    step) giving that step's item indices."""
    if how == "random":
        return partial(random_batch, len(items))
    if how == "lookalike":
        return LookalikeBatches(items)
    raise BadInputError(f"unknown RECIPE batches {how!r}; choose one of: random, lookalike")
