"""The evaluation suites: the real-data sets shipped with wiseedit (ZsRE, CounterFact, and WISE's
Hallucination and Temporal sets), the synthetic ``world`` suite, and any edit file, each loaded as
EditRecords plus the pool of irrelevant texts WISE's routing loss needs.

The data lives in the package and is read by :mod:`wiseedit.data.shipped` (the original JSON files
byte for byte, gzip-compressed, checked against their sha256 on every load). Nothing is read from
outside the package.

Irrelevant pools (WISE trains its router to keep unrelated inputs x_i away from the side memory). The
reference takes them from a split disjoint from the edits: ``<loc> <loc_ans>`` of the ZsRE *train*
split, ``<locality_prompt> <locality_ground_truth>`` of hallucination-/temporal-train. Here:

- zsre: the ZsRE train split is not shipped (69 MB), so the pool is counterfact-train's locality
  facts, a disjoint source (no overlap with ZsRE's questions or NQ locality probes; checked);
- counterfact: counterfact-train's locality facts (disjoint case ids; RECIPE meta-trains on that file);
- hallucination / temporal: the locality passages of their own -train files, as the reference does.

A pool row whose prompt is one the suite evaluates (an edit prompt, rephrase, locality or portability
prompt) is dropped (2876 rows of counterfact-train for the counterfact suite, none elsewhere), so the
router is never trained on what Loc measures; duplicates are dropped, file order kept. Pool sizes:
zsre 8453, counterfact 6541, hallucination 306, temporal 75. Edit i gets
``irrelevant = pool[i % len(pool)]``, the pairing the reference uses (``loc_prompts[i]`` for edit i).

The ``world`` suite (:func:`wiseedit.world.suite.world_edits`, split "eval") is of kind qa; its edits
carry their own irrelevant sentences (about people never edited), which are its pool. An edit file
(:func:`suite_from_file`) is of kind qa (temporal when every record has an ``ood_rephrase``); edits
without their own ``irrelevant`` get ``pool[i % len(pool)]`` of WISE's default pool
(:func:`wiseedit.data.irrelevant.default_pool`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping, Sequence

from wiseedit.data.irrelevant import default_pool
from wiseedit.data.shipped import (
    COUNTERFACT_EDIT, COUNTERFACT_TRAIN, HALLUCINATION_EDIT, HALLUCINATION_TRAIN, TEMPORAL_EDIT, TEMPORAL_TRAIN,
    ZSRE, ShippedFile, evaluated_prompts, shipped_records, shipped_rows,
)
from wiseedit.edits.reader import read_edits
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError

SuiteKind = Literal["qa", "hallucination", "temporal"]

@dataclass(frozen=True)
class SuiteSpec:
    """What a suite is made of and how it is scored."""

    name: str
    kind: SuiteKind  # qa: Rel/Gen/Loc(/portability) accuracies; hallucination: perplexity; temporal: OOD loss
    edits: ShippedFile  # the edit set, applied and evaluated in file order
    pool: ShippedFile  # the disjoint source of irrelevant texts (see the module docstring)


@dataclass
class Suite:
    """A loaded suite: its edits in file order and the irrelevant texts for WISE's routing loss."""

    name: str
    kind: SuiteKind
    edits: list[EditRecord]
    irrelevant_pool: list[str]


#: The suites :func:`load_suite` knows, by name (read-only).
SUITES: Mapping[str, SuiteSpec] = MappingProxyType({
    "zsre": SuiteSpec("zsre", "qa", ZSRE, COUNTERFACT_TRAIN),
    "counterfact": SuiteSpec("counterfact", "qa", COUNTERFACT_EDIT, COUNTERFACT_TRAIN),
    "hallucination": SuiteSpec("hallucination", "hallucination", HALLUCINATION_EDIT, HALLUCINATION_TRAIN),
    "temporal": SuiteSpec("temporal", "temporal", TEMPORAL_EDIT, TEMPORAL_TRAIN),
})

WORLD = "world"  # the synthetic suite, generated rather than shipped

#: Every suite name :func:`load_suite` and :func:`open_suite` accept.
SUITE_NAMES: tuple[str, ...] = (WORLD, *SUITES)


def load_suite(name: str) -> Suite:
    """The suite `name` (one of :data:`SUITE_NAMES`): its edits, in file order, and its pool.

    Raises BadInputError for an unknown name, listing the known ones.
    """
    if name == WORLD:
        return _world_suite()
    spec = SUITES.get(name)
    if spec is None:
        raise BadInputError(f"Unknown suite {name!r}; the suites are: {', '.join(SUITE_NAMES)}.")
    edits = shipped_records(spec.edits, spec.name)
    pool = _irrelevant_pool(shipped_rows(spec.pool), evaluated_prompts(edits))
    edits = [replace(e, irrelevant=pool[i % len(pool)]) for i, e in enumerate(edits)]
    return Suite(spec.name, spec.kind, edits, pool)


def suite_from_file(path: str | Path) -> Suite:
    """The edits of an edit file (any layout :func:`wiseedit.edits.read_edits` reads) as a suite named
    by the path: kind qa, or temporal when every record has an ``ood_rephrase``; edits without their
    own ``irrelevant`` get one from WISE's default pool."""
    edits = read_edits(path)
    pool = list(default_pool())
    kind: SuiteKind = "temporal" if all(isinstance(e.extra.get("ood_rephrase"), str) for e in edits) else "qa"
    return Suite(str(path), kind, with_irrelevant(edits, pool), pool)


def open_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (:data:`SUITE_NAMES`), else the edit file at that path (a name wins over a file
    of the same name in the working directory: write ``./zsre`` for the file)."""
    if str(name_or_path) in SUITE_NAMES:
        return load_suite(str(name_or_path))
    if not Path(name_or_path).exists():
        raise BadInputError(f"Suite {str(name_or_path)!r} is neither a suite ({', '.join(SUITE_NAMES)}) "
                            "nor an existing edit file.")
    return suite_from_file(name_or_path)


def with_irrelevant(edits: Sequence[EditRecord], pool: Sequence[str]) -> list[EditRecord]:
    """`edits` where edit i without its own ``irrelevant`` gets ``pool[i % len(pool)]``."""
    if not pool:
        return list(edits)
    return [e if e.irrelevant else replace(e, irrelevant=pool[i % len(pool)]) for i, e in enumerate(edits)]


def _world_suite() -> Suite:
    from wiseedit.world.suite import world_edits

    edits = world_edits("eval")
    pool = list(dict.fromkeys(e.irrelevant for e in edits if e.irrelevant))
    return Suite(WORLD, "qa", with_irrelevant(edits, pool), pool)


def _irrelevant_pool(rows: list[dict], exclude: set[str]) -> list[str]:
    """``"<locality_prompt> <locality_ground_truth>"`` of each pool row (ZsRE rows: ``"<loc> <loc_ans>"``)
    whose prompt is not in `exclude`, without duplicates, in file order."""
    pool, seen = [], set()
    for row in rows:
        prompt, answer = (row["loc"], row["loc_ans"]) if "loc" in row else (
            row["locality_prompt"], row["locality_ground_truth"])
        text = f"{prompt} {answer}".rstrip()
        if prompt not in exclude and text not in seen:
            seen.add(text)
            pool.append(text)
    return pool
