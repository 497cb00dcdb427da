"""A deterministic fictional knowledge base: people, their facts, and the text that states them.

``build_world(seed)`` gives the same world on every machine and Python version (it only uses
``random.Random`` with an explicit seed and sorted iteration), so a model trained on it and the
evaluation suite drawn from it always agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from wiseedit.world.relations import FIRST_SYLLABLES, LAST_SYLLABLES, OBJECTS, RELATIONS, Relation

DEFAULT_SEED = 1234
DEFAULT_NUM_ENTITIES = 400

# Entity splits, as fractions of all entities, in this order. "train" is for methods that need training
# (RECIPE) and is never edited in evaluation; "eval" holds the edited facts; "locality" gives probes on
# other people; "irrelevant" is the disjoint pool of rows for WISE's routing loss.
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.35), ("eval", 0.50), ("locality", 0.075),
                                         ("irrelevant", 0.075))


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple of the world."""

    subject: str
    relation: str
    object: str


@dataclass
class World:
    """People, their facts, and which split each person belongs to."""

    seed: int
    entities: list[str]
    facts: dict[tuple[str, str], str]  # (subject, relation name) -> object
    split_of: dict[str, str] = field(default_factory=dict)  # subject -> split name

    @property
    def relations(self) -> tuple[Relation, ...]:
        return RELATIONS

    def relation(self, name: str) -> Relation:
        for rel in RELATIONS:
            if rel.name == name:
                return rel
        raise KeyError(f"no relation named {name!r}")

    def entities_in(self, split: str) -> list[str]:
        return [e for e in self.entities if self.split_of[e] == split]

    def facts_of(self, subject: str) -> list[Fact]:
        return [Fact(subject, r.name, self.facts[(subject, r.name)]) for r in RELATIONS]

    def sentences(self) -> list[str]:
        """Every fact under every phrasing, as training text ("<prompt> <object>.")."""
        out = []
        for subject in self.entities:
            for rel in RELATIONS:
                obj = self.facts[(subject, rel.name)]
                out.extend(f"{rel.render(subject, k)} {obj}." for k in range(len(rel.phrasings)))
        return out


def _person_names(rng: random.Random, n: int, taken: frozenset[str] = frozenset()) -> list[str]:
    """`n` distinct names built from the world's syllables, none of them in `taken`."""
    names: list[str] = []
    seen: set[str] = set(taken)
    while len(names) < n:
        first = "".join(rng.choice(FIRST_SYLLABLES) for _ in range(2)).capitalize()
        last = "".join(rng.choice(LAST_SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize()
        name = f"{first} {last}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def build_world(seed: int = DEFAULT_SEED, num_entities: int = DEFAULT_NUM_ENTITIES) -> World:
    """Build the world for `seed`: `num_entities` people, each with one object per relation."""
    rng = random.Random(seed)
    entities = _person_names(rng, num_entities)
    facts = {(e, rel.name): rng.choice(OBJECTS[rel.object_type]) for e in entities for rel in RELATIONS}
    order = entities[:]
    rng.shuffle(order)
    split_of: dict[str, str] = {}
    start = 0
    for i, (name, frac) in enumerate(SPLITS):
        end = len(order) if i == len(SPLITS) - 1 else start + round(frac * len(order))
        split_of.update((e, name) for e in order[start:end])
        start = end
    return World(seed=seed, entities=entities, facts=facts, split_of=split_of)


def invented_people(world: World, n: int) -> World:
    """A world of `n` people that `world` does not have: new names from the same syllables, facts drawn
    at random. Its people are all in split "train"; `world`'s "irrelevant" people come along (with
    their facts) as the pool the suite draws irrelevant rows from. A model trained on `world` has never
    read about them: they only teach a method what a *name* is (see ``world-train-x4-invented``)."""
    rng = random.Random(f"{world.seed}:invented:{n}")
    people = _person_names(rng, n, taken=frozenset(world.entities))
    facts = {(e, rel.name): rng.choice(OBJECTS[rel.object_type]) for e in people for rel in RELATIONS}
    pool = world.entities_in("irrelevant")
    facts.update({(e, rel.name): world.facts[(e, rel.name)] for e in pool for rel in RELATIONS})
    split_of = {e: "train" for e in people} | {e: "irrelevant" for e in pool}
    return World(seed=world.seed, entities=people + pool, facts=facts, split_of=split_of)
