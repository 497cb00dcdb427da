"""The data files shipped inside the package (``wiseedit/data/suites/*.json.gz``): the original JSON
files of ZsRE, CounterFact and WISE's Hallucination and Temporal sets, byte for byte, gzip-compressed
(see PROVENANCE.md there), each checked against the sha256 of the original file on every load.

Data, not evaluation: :mod:`wiseedit.evaluation.suites` builds the suites from these files, and
RECIPE's meta-training reads the CounterFact train file and refuses the texts the suites evaluate
(:func:`evaluated_prompts`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from wiseedit.edits.layouts import to_edit_record
from wiseedit.edits.record import EditRecord
from wiseedit.errors import InputProblems, WiseEditError

DATA_PACKAGE = "wiseedit.data.suites"  # where the .json.gz files are installed


@dataclass(frozen=True)
class ShippedFile:
    """One data file shipped in :data:`DATA_PACKAGE`: the gzip of an original JSON file, unchanged."""

    name: str  # file name in the package, e.g. "zsre.json.gz"
    origin: str  # path of the original under the shared data folder (provenance; never read at run time)
    sha256: str  # of the original, uncompressed bytes
    records: int  # length of its top-level JSON array


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
