"""The irrelevant row of WISE's routing loss: text the side memory must not react to.

An edit's own ``irrelevant`` field wins. Otherwise a row is drawn from the shipped default pool of
neutral general-knowledge questions with answers (:func:`wiseedit.data.irrelevant.default_pool`) (the reference runs use a Natural Questions
question and answer, from a split we do not have), deterministically from (seed, edit number), so
that continuing a delta later draws exactly what one long run would have drawn.
"""

from __future__ import annotations

import random

from wiseedit.data.irrelevant import default_pool


def irrelevant_row(own: str | None, seed: int, edit_number: int) -> str:
    """The irrelevant text for the `edit_number`-th edit (0-based, counted over the whole delta)."""
    if own:
        return own
    pool = default_pool()
    return pool[random.Random(f"{seed}:{edit_number}").randrange(len(pool))]
