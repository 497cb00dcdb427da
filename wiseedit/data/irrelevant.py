"""The shipped pool of irrelevant rows: neutral general-knowledge questions with their answers, one per
line of ``irrelevant_pool.txt`` (``#`` starts a comment line).

WISE trains its router to keep these away from the side memory when an edit brings no irrelevant text
of its own; the evaluation gives them to edit files without one; ``wiseedit export`` measures a
merged export's drift on them. Data, not code of any method: everything may read it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def default_pool() -> tuple[str, ...]:
    """The shipped pool (``irrelevant_pool.txt``, one row per line)."""
    text = resources.files("wiseedit.data").joinpath("irrelevant_pool.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
