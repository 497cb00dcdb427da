"""The evaluation suites: the real-data sets shipped with wiseedit (ZsRE, CounterFact, and WISE's
Hallucination and Temporal sets), the synthetic ``world`` suite, and any edit file, each loaded as
EditRecords plus the pool of irrelevant texts WISE's routing loss needs.

The data lives in the package (``wiseedit/data/suites/*.json.gz``, the original JSON files byte for
byte, gzip-compressed; see PROVENANCE.md there) and is checked against the sha256 of the original
file on every load. Nothing is read from outside the package.

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
(:func:`wiseedit.wise.irrelevant.default_pool`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Mapping, Sequence

from wiseedit.edits.layouts import to_edit_record
from wiseedit.edits.reader import read_edits
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError, InputProblems, WiseEditError

SuiteKind = Literal["qa", "hallucination", "temporal"]

DATA_PACKAGE = "wiseedit.data.suites"  # where the .json.gz files are installed


@dataclass(frozen=True)
class ShippedFile:
    """One data file shipped in :data:`DATA_PACKAGE`: the gzip of an original JSON file, unchanged."""

    name: str  # file name in the package, e.g. "zsre.json.gz"
    origin: str  # path of the original under the shared data folder (provenance; never read at run time)
    sha256: str  # of the original, uncompressed bytes
    records: int  # length of its top-level JSON array


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


ZSRE = ShippedFile("zsre.json.gz", "zsre/zsre_mend_eval_portability_gpt4.json",
                   "0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9", 1037)
COUNTERFACT_EDIT = ShippedFile("counterfact-edit.json.gz", "counterfact/counterfact-edit.json",
                               "c31a07f7eb3d37e4acdaa284f0926a40d5a9340ca115141e0d026c79425bea56", 10000)
COUNTERFACT_TRAIN = ShippedFile("counterfact-train.json.gz", "counterfact/counterfact-train.json",
                                "bb40e12c7b740d6859e521674cf438f063c7c3e444bc1b449e74cdd0900772d0", 10000)
HALLUCINATION_EDIT = ShippedFile("hallucination-edit.json.gz", "wise/hallucination/hallucination-edit.json",
                                 "523ce88b5299047bf58ea3ad8b7e9d12635592543df54b58c8eaf16d5e68aaaf", 600)
HALLUCINATION_TRAIN = ShippedFile("hallucination-train.json.gz",
                                  "wise/hallucination/hallucination-train.json",
                                  "ef280a0ce9aa194c545e7a1c7983df181b8e48dbfb1945ffe40e1903cca0d297", 306)
TEMPORAL_EDIT = ShippedFile("temporal-edit.json.gz", "wise/temporal/temporal-edit.json",
                            "3c27956224d56111762e7b56ca0595dc638cc005faaf322a01c48ecd5283aef8", 75)
TEMPORAL_TRAIN = ShippedFile("temporal-train.json.gz", "wise/temporal/temporal-train.json",
                             "0ba8c40de49bd0d0ffc1da69ac17fcfce6db8c32bf36a7df5c88730b48e1172a", 75)

#: Every shipped file, in the order PROVENANCE.md lists them.
SHIPPED_FILES: tuple[ShippedFile, ...] = (ZSRE, COUNTERFACT_EDIT, COUNTERFACT_TRAIN, HALLUCINATION_EDIT,
                                          HALLUCINATION_TRAIN, TEMPORAL_EDIT, TEMPORAL_TRAIN)

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


def shipped_bytes(file: ShippedFile) -> bytes:
    """The original bytes of a shipped file (decompressed), after checking their sha256."""
    try:
        packed = resources.files(DATA_PACKAGE).joinpath(file.name).read_bytes()
    except FileNotFoundError:
        raise WiseEditError(f"The suite data file {file.name} is missing from the wiseedit installation; "
                            "reinstall wiseedit.") from None
    data = gzip.decompress(packed)
    if hashlib.sha256(data).hexdigest() != file.sha256:
        raise WiseEditError(f"The suite data file {file.name} is corrupted (its sha256 does not match "
                            "the original's); reinstall wiseedit.")
    return data


def shipped_rows(file: ShippedFile) -> list[dict]:
    """The parsed records of a shipped file (its top-level JSON array)."""
    rows = json.loads(shipped_bytes(file))
    if len(rows) != file.records:  # checksummed bytes: only a wrong table entry can cause this
        raise WiseEditError(f"{file.name}: {len(rows)} records, expected {file.records}")
    return rows


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
    from wiseedit.wise.irrelevant import default_pool  # the WISE package imports torch: only when needed

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


def shipped_records(file: ShippedFile, name: str) -> list[EditRecord]:
    """The rows of shipped `file` as EditRecords, through the layouts the edit reader uses; a record's
    ``source`` is ``<file>[<index in the JSON array>]`` and rows without an id get ``<name>:<index>``."""
    problems: list[str] = []
    records = [to_edit_record(row, where=f"{file.name}[{i}]", default_id=f"{name}:{i}", problems=problems)
               for i, row in enumerate(shipped_rows(file))]
    if problems:  # the files are checksummed: this means the layout code changed under them
        raise InputProblems(problems)
    return records


def evaluated_prompts(edits: list[EditRecord]) -> set[str]:
    """Every prompt a suite's metrics run on: a pool row with one of these would leak into training."""
    prompts = set()
    for e in edits:
        prompts.add(e.prompt)
        prompts.update(e.rephrase)
        prompts.update(p.prompt for p in e.locality)
        prompts.update(p.prompt for p in e.portability)
        for key in ("ood_rephrase", "locality_prompt"):  # probes the layouts keep in `extra`
            if isinstance(e.extra.get(key), str):
                prompts.add(e.extra[key])
    return prompts


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
