"""The tiny-model edit set of WISE's first bar: 10 edits and 50 unrelated prompts, fixed.

Ten people, five relations (each used by two people: "Alice lives in" and "Erin lives in" differ only
in the subject, the hard case for a router), ten objects; the unrelated prompts are 3-7 random words of
a small vocabulary, drawn from a fixed seed. Shared by the test and by ``scripts/wise_tiny_models.py``.
"""

from __future__ import annotations

import random

from wiseedit.edits.record import EditRecord

SUBJECTS = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy")
RELATIONS = ("works as a", "was born in", "plays the", "speaks", "lives in")
OBJECTS = ("doctor", "Paris", "violin", "French", "Berlin", "teacher", "Tokyo", "piano", "German", "Rome")
WORDS = "the a of river sky blue green music art science water fire old new city road house tree song book".split()


def ten_edits() -> list[EditRecord]:
    """The 10 edits: person i, relation i mod 5, object 3i mod 10."""
    return [EditRecord(prompt=f"{s} {RELATIONS[i % 5]}", target=OBJECTS[(i * 3) % 10], id=str(i))
            for i, s in enumerate(SUBJECTS)]


def unrelated_prompts(count: int = 50, seed: int = 0) -> list[str]:
    """`count` prompts of 3-7 words of :data:`WORDS`, the same for the same seed."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(count)]
