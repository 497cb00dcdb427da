"""The shipped real-data suites: complete, byte-identical to their sources, and loaded correctly."""

import gzip
import hashlib
from importlib import resources

import pytest

from wiseedit.errors import BadInputError
from wiseedit.evaluation.suites import SHIPPED_FILES, SUITES, load_suite

# The sha256 of the original files, as the README of the original data lists them (copied here on purpose: the
# test must not trust the table it checks).
ORIGINAL_SHA256 = {
    "zsre.json.gz": "0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9",
    "counterfact-edit.json.gz": "c31a07f7eb3d37e4acdaa284f0926a40d5a9340ca115141e0d026c79425bea56",
    "counterfact-train.json.gz": "bb40e12c7b740d6859e521674cf438f063c7c3e444bc1b449e74cdd0900772d0",
    "hallucination-edit.json.gz": "523ce88b5299047bf58ea3ad8b7e9d12635592543df54b58c8eaf16d5e68aaaf",
    "hallucination-train.json.gz": "ef280a0ce9aa194c545e7a1c7983df181b8e48dbfb1945ffe40e1903cca0d297",
    "temporal-edit.json.gz": "3c27956224d56111762e7b56ca0595dc638cc005faaf322a01c48ecd5283aef8",
    "temporal-train.json.gz": "0ba8c40de49bd0d0ffc1da69ac17fcfce6db8c32bf36a7df5c88730b48e1172a",
}

# name: (kind, edits, irrelevant pool size)
EXPECTED = {
    "zsre": ("qa", 1037, 8453),
    "counterfact": ("qa", 10000, 6541),
    "hallucination": ("hallucination", 600, 306),
    "temporal": ("temporal", 75, 75),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_SHA256))
def test_shipped_file_decompresses_to_the_original(name):
    packed = resources.files("wiseedit.data.suites").joinpath(name).read_bytes()
    assert packed[4:8] == b"\0\0\0\0"  # gzip mtime 0: the bytes do not depend on when they were made
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == ORIGINAL_SHA256[name]


def test_every_shipped_file_is_listed_with_its_checksum_and_provenance():
    assert {f.name: f.sha256 for f in SHIPPED_FILES} == ORIGINAL_SHA256
    provenance = resources.files("wiseedit.data.suites").joinpath("PROVENANCE.md").read_text()
    for f in SHIPPED_FILES:
        assert f"{f.sha256}  {f.origin}" in provenance


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_suite_loads_with_expected_counts(name):
    kind, n_edits, n_pool = EXPECTED[name]
    suite = load_suite(name)
    counts = (suite.name, suite.kind, len(suite.edits), len(suite.irrelevant_pool))
    assert counts == (name, kind, n_edits, n_pool)
    assert len({e.id for e in suite.edits}) == n_edits
    assert all(e.prompt and e.target for e in suite.edits)
    assert [e.irrelevant for e in suite.edits[:2]] == suite.irrelevant_pool[:2]
    assert len(set(suite.irrelevant_pool)) == n_pool
    loc_texts = {f"{p.prompt} {p.answer}" for e in suite.edits for p in e.locality}
    assert not loc_texts & set(suite.irrelevant_pool)  # the router never trains on a Loc probe


def test_zsre_records_map_the_reference_fields():
    first = load_suite("zsre").edits[0]
    assert first.prompt == "When was the inception of IAAF Combined Events Challenge?"
    assert first.target == "2006"
    assert first.rephrase == ("When was the IAAF Combined Events Challenge launched?",)
    assert first.locality[0].prompt == "nq question: what is the name of the last episode of spongebob"
    assert first.locality[0].answer == "The String"
    assert first.portability[0].answer == "Athletics"
    assert first.irrelevant == "John Lennon performs on the guitar"  # counterfact-train, not ZsRE


def test_counterfact_pool_leaves_out_the_evaluated_prompts():
    suite = load_suite("counterfact")
    first = suite.edits[0]
    assert (first.id, first.prompt, first.target) == ("0", "The mother tongue of Danielle Darrieux is", "English")
    assert first.locality[0].prompt == "Michel Rocard is a native speaker of"
    assert first.extra["ground_truth"] == "French"
    edit_prompts = {e.prompt for e in suite.edits} | {r for e in suite.edits for r in e.rephrase}
    assert not any(text.startswith(tuple(edit_prompts)) for text in suite.irrelevant_pool[:500])


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(BadInputError) as error:
        load_suite("zsre-full")
    assert "zsre-full" in str(error.value)
    assert all(name in str(error.value) for name in SUITES)
