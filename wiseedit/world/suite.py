"""The world suite: counterfactual edits of the built-in world, with fixed splits.

For every person of a split, ``EDITED_RELATIONS`` of the 7 relations are edited (their object replaced
by another object of the same type); the rest stay untouched so that each edit has a locality probe
on *the same person*. Each edit carries:

- ``prompt``: the fact under one phrasing (drawn per edit) -> Rel;
- ``rephrase``: the same fact under the other phrasings -> Gen;
- ``locality``: an untouched fact of the same person, and a fact of another person, each with its
  true object -> Loc. The other person is from the "locality" split (never edited) for "eval", and
  another person of the split itself for "train", which thus shares no text with the eval suite;
- ``irrelevant``: a full sentence about a person from the "irrelevant" split (a disjoint pool) for
  WISE's routing loss.

Split "eval" is what ``wiseedit eval --suite world`` edits; split "train" (people never edited in
evaluation) is for methods that need training, such as RECIPE. :func:`object_variants` edits each
fact of a split to several objects, so that a method trained on it cannot tie an object to a person.
"""

from __future__ import annotations

import random
from dataclasses import replace

from wiseedit.edits.record import EditRecord, LocalityProbe
from wiseedit.world.generator import DEFAULT_SEED, World, build_world, invented_people
from wiseedit.world.relations import OBJECTS

EDITED_RELATIONS = 5  # per person; the other 2 relations are same-person locality probes


def _sentence(world: World, rng: random.Random, subject: str, relation: str) -> tuple[str, str]:
    rel = world.relation(relation)
    return rel.render(subject, rng.randrange(len(rel.phrasings))), world.facts[(subject, relation)]


def world_edits(split: str = "eval", seed: int = DEFAULT_SEED, world: World | None = None,
                label: str | None = None) -> list[EditRecord]:
    """The counterfactual edits of `split` ("eval" or "train"), in their fixed (shuffled) order.
    `label` (default: `split`) names them (ids ``world-<label>-NNNN``) and seeds their draws."""
    world = world or build_world(seed)
    people = world.entities_in(split)
    if not people:
        raise ValueError(f"no people in split {split!r}")
    label = label or split
    rng = random.Random(f"{world.seed}:suite:{label}")
    # Other-person probes: the never-edited "locality" people for the eval split; for any other split,
    # the split's own other people, so that training data never holds a text the eval suite measures.
    locality_people = world.entities_in("locality")
    pool = world.entities_in("irrelevant")
    names = [r.name for r in world.relations]
    picks = []
    for person in people:
        chosen = rng.sample(names, EDITED_RELATIONS)
        kept = [n for n in names if n not in chosen]
        picks.extend((person, relation, kept) for relation in chosen)
    rng.shuffle(picks)

    edits = []
    for i, (person, relation, kept) in enumerate(picks):
        rel = world.relation(relation)
        old = world.facts[(person, relation)]
        new = rng.choice([o for o in OBJECTS[rel.object_type] if o != old])
        k = rng.randrange(len(rel.phrasings))
        same = LocalityProbe(*_sentence(world, rng, person, rng.choice(kept)))
        others = locality_people if split == "eval" else [p for p in people if p != person]
        other = LocalityProbe(*_sentence(world, rng, rng.choice(others), rng.choice(names)))
        irr_prompt, irr_obj = _sentence(world, rng, rng.choice(pool), rng.choice(names))
        edits.append(EditRecord(
            prompt=rel.render(person, k),
            target=new,
            id=f"world-{label}-{i:04d}",
            subject=person,
            rephrase=tuple(rel.render(person, j) for j in range(len(rel.phrasings)) if j != k),
            locality=(same, other),
            irrelevant=f"{irr_prompt} {irr_obj}.",
            source=f"world:{label}:{i}",
            extra={"relation": relation, "ground_truth": old},
        ))
    return edits


def object_variants(edits: list[EditRecord], objects: int, world: World | None = None) -> list[EditRecord]:
    """Each of `edits` (world edits) to `objects` distinct counterfactual objects: the edit itself, then
    ``objects - 1`` copies with other objects of the same type (ids ``<id>-v1``, ...), the whole list
    shuffled; drawn from the world's seed, so the same call gives the same list."""
    world = world or build_world()
    rng = random.Random(f"{world.seed}:variants:{objects}")
    out = []
    for edit in edits:
        rel = world.relation(edit.extra["relation"])
        others = [o for o in OBJECTS[rel.object_type] if o not in (edit.extra["ground_truth"], edit.target)]
        out.append(edit)
        out.extend(replace(edit, target=obj, id=f"{edit.id}-v{j}")
                   for j, obj in enumerate(rng.sample(others, objects - 1), start=1))
    rng.shuffle(out)
    return out


def invented_edits(people: int, world: World | None = None) -> list[EditRecord]:
    """Counterfactual edits, as the train split's, of `people` invented people (names the world does
    not have, from its syllables; :func:`~wiseedit.world.generator.invented_people`): ids
    ``world-invented-NNNN``, other-person probes among the invented people."""
    invented = invented_people(world or build_world(), people)
    return world_edits("train", world=invented, label="invented")


def world_facts(seed: int = DEFAULT_SEED, world: World | None = None) -> list[EditRecord]:
    """Every true fact of the world as an edit record (the fact under phrasing 0, the others as
    rephrasings, the true object as target): the world itself, in wiseedit's edit format."""
    world = world or build_world(seed)
    return [EditRecord(prompt=rel.render(person, 0), target=world.facts[(person, rel.name)],
                       id=f"world-fact-{person.replace(' ', '_')}-{rel.name}", subject=person,
                       rephrase=tuple(rel.render(person, k) for k in range(1, len(rel.phrasings))),
                       extra={"relation": rel.name, "split": world.split_of[person]})
            for person in world.entities for rel in world.relations]


def main(argv: list[str] | None = None) -> None:
    """``python -m wiseedit.world.suite [--split eval|train|facts] [--seed S] [--limit N]``: JSONL on stdout."""
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser(description="Write the world's edits or facts as JSONL (wiseedit's edit format).")
    parser.add_argument("--split", choices=("eval", "train", "facts"), default="eval")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N records")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be 0 or more, got {args.limit}")
    records = world_facts(args.seed) if args.split == "facts" else world_edits(args.split, args.seed)
    records = records[:args.limit] if args.limit is not None else records
    try:
        for record in records:
            sys.stdout.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (``| head -100``): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(1)


if __name__ == "__main__":
    main()
