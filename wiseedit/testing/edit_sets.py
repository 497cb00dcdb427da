"""Generated edit sets for tiny random models: edits and unrelated prompts made of the same words.

A fixed edit set tests one case; the bars of WISE on tiny models (every edit recalled, unrelated
prompts untouched) must hold for any such set. :func:`edit_set` draws one from a seed and one of
several :data:`VOCABULARIES`: ``count`` edits "<subject> <relation>" -> "<object>" (distinct subjects;
relations may repeat, so two edits can differ only in their subject) and ``unrelated`` prompts of 2-6
words drawn from the edits' own words (subjects, relation words, objects), so an unrelated prompt
shares most of its words with some edit. An unrelated prompt never contains an edit's prompt (it would
be that edit, asked inside a longer text), and never repeats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wiseedit.edits.record import EditRecord


@dataclass(frozen=True)
class Vocabulary:
    """Words to build edits from: subjects, relation phrases, objects."""

    subjects: tuple[str, ...]
    relations: tuple[str, ...]
    objects: tuple[str, ...]


VOCABULARIES: dict[str, Vocabulary] = {
    "people": Vocabulary(
        ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar"),
        ("works as a", "was born in", "plays the", "speaks", "lives in", "is married to"),
        ("doctor", "Paris", "violin", "French", "Berlin", "teacher", "Tokyo", "piano", "German", "Rome", "nurse")),
    "cities": Vocabulary(
        ("Oslo", "Lima", "Cairo", "Dublin", "Quito", "Hanoi", "Perth", "Bern", "Riga", "Kyiv", "Dakar", "Lagos"),
        ("speaks", "is the capital of", "lies on the", "is famous for", "was founded by", "trades in"),
        ("French", "Spain", "river", "music", "Romans", "coffee", "English", "Peru", "sea", "art", "gold")),
    "things": Vocabulary(
        ("The apple", "The old house", "My sister", "The red car", "A green tree", "The school", "Our dog",
         "The song", "The book", "The train", "The city", "The sky"),
        ("is made of", "belongs to", "was painted", "smells like", "is next to", "sounds like"),
        ("wood", "Mary", "blue", "bread", "the station", "thunder", "glass", "Tom", "yellow", "rain", "stone")),
}


def edit_set(seed: int = 0, vocabulary: str = "cities", count: int = 10,
             unrelated: int = 50) -> tuple[list[EditRecord], list[str]]:
    """(`count` edits, `unrelated` prompts) drawn from `seed` and :data:`VOCABULARIES`[`vocabulary`]."""
    vocab = VOCABULARIES[vocabulary]
    if count > len(vocab.subjects):
        raise ValueError(f"vocabulary {vocabulary!r} has {len(vocab.subjects)} subjects, asked {count} edits")
    rng = random.Random(f"{vocabulary}:{seed}")
    subjects = rng.sample(vocab.subjects, count)
    edits = [EditRecord(prompt=f"{s} {rng.choice(vocab.relations)}", target=rng.choice(vocab.objects), id=str(i))
             for i, s in enumerate(subjects)]
    words = sorted({w for e in edits for w in f"{e.prompt} {e.target}".split()})
    prompts: list[str] = []
    seen = {e.prompt for e in edits}
    while len(prompts) < unrelated:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        padded = f" {text} "
        if text in seen or any(f" {e.prompt} " in padded for e in edits):
            continue
        seen.add(text)
        prompts.append(text)
    return edits, prompts
