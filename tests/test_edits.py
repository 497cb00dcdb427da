"""Reading edit files: every supported layout parses, every bad input is located as file:line: field."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from wiseedit.edits import EditRecord, LocalityProbe, PortabilityProbe, read_edits
from wiseedit.errors import BadInputError, EditFileWarning, InputProblems

DATA = Path("/work/shared/data")
OK = {"prompt": "a", "target": "b"}  # a valid native record to build variants from


def write(tmp_path: Path, text: str | bytes, name: str = "edits.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def problems_of(path: Path | str, **kwargs) -> list[str]:
    with pytest.raises(InputProblems) as info:
        read_edits(path, **kwargs)
    return info.value.problems


# --- layouts -------------------------------------------------------------------------------------


def test_native_full_record(tmp_path):
    rec = {
        "id": 7, "prompt": "The capital of France is", "target": "Lyon", "subject": "France",
        "rephrase": ["France's capital is", "The French capital is"],
        "locality": [{"prompt": "The capital of Spain is", "answer": "Madrid"}],
        "portability": [{"prompt": "The Eiffel Tower's capital city is", "answer": "Lyon"}],
        "irrelevant": "Bananas are yellow.", "note": "kept",
    }
    with pytest.warns(EditFileWarning, match="'note' \\(first at line 2\\)"):
        [edit] = read_edits(write(tmp_path, "\n" + jsonl(rec)))  # a leading blank line is skipped
    assert edit == EditRecord(
        prompt="The capital of France is", target="Lyon", id="7", subject="France",
        rephrase=("France's capital is", "The French capital is"),
        locality=(LocalityProbe("The capital of Spain is", "Madrid"),),
        portability=(PortabilityProbe("The Eiffel Tower's capital city is", "Lyon"),),
        irrelevant="Bananas are yellow.", source=f"{tmp_path / 'edits.jsonl'}:2",
    )
    assert edit.extra == {"note": "kept"}


def test_native_minimal_gets_default_id_and_string_rephrase(tmp_path):
    path = write(tmp_path, jsonl({**OK, "rephrase": "c"}, {"prompt": "d", "target": "e"}))
    first, second = read_edits(path)
    assert (first.id, second.id) == ("edits:1", "edits:2")
    assert first.rephrase == ("c",) and second.rephrase == () and second.subject is None


def test_zsre_layout(tmp_path):
    rec = {
        "subject": "IAAF", "src": "When was IAAF founded?", "pred": "2011", "rephrase": "IAAF began in?",
        "alt": "2006", "answers": ["1998"], "loc": "nq question: who sang x", "loc_ans": "Y",
        "cond": "2011 >> 2006 || When was IAAF founded?",
        "portability": {"Recalled Relation": "(a, b, c)", "New Question": "Q?", "New Answer": "A"},
    }
    bare = {"src": "Who is X's sister?", "alt": "Z", "rephrase": "X's sister is?"}  # no loc/portability
    edit, plain = read_edits(write(tmp_path, json.dumps([rec, bare], indent=2), "zsre.json"))
    assert (edit.prompt, edit.target, edit.subject) == ("When was IAAF founded?", "2006", "IAAF")
    assert edit.id == "zsre:1"  # a JSON array numbers its records, not its lines
    assert edit.rephrase == ("IAAF began in?",)
    assert edit.locality == (LocalityProbe("nq question: who sang x", "Y"),)  # prefix kept verbatim
    assert edit.portability == (PortabilityProbe("Q?", "A"),)
    assert edit.extra == {"pred": "2011", "answers": ["1998"], "cond": rec["cond"]}
    assert plain.locality == () and plain.portability == () and plain.source.endswith("zsre.json:20")


def test_counterfact_layout(tmp_path):
    rec = {
        "case_id": 0, "prompt": "The mother tongue of D is", "target_new": "English", "subject": "D",
        "ground_truth": "French", "rephrase_prompt": "Where D is from, people speak",
        "locality_prompt": "M is a native speaker of", "locality_ground_truth": "French",
    }
    [edit] = read_edits(write(tmp_path, json.dumps([rec]), "cf.json"))
    assert (edit.id, edit.prompt, edit.target) == ("0", "The mother tongue of D is", "English")
    assert edit.subject == "D"
    assert edit.rephrase == ("Where D is from, people speak",)
    assert edit.locality == (LocalityProbe("M is a native speaker of", "French"),)
    assert edit.extra == {"case_id": 0, "ground_truth": "French"}


def test_wise_hallucination_and_temporal_layouts(tmp_path):
    hallu = {"prompt": "A passage about x.", "target_new": "More text.", "subject": "x",
             "locality_prompt": "Unrelated passage", "locality_ground_truth": "continues here"}
    empty_loc = dict(hallu, locality_ground_truth="")  # shipped by the WISE files: no probe then
    temporal = dict(hallu, ood_rephrase="Tell me about x.")
    a, b, c = read_edits(write(tmp_path, jsonl(hallu, empty_loc, temporal)))
    assert a.locality == (LocalityProbe("Unrelated passage", "continues here"),) and a.rephrase == ()
    assert b.locality == ()
    assert b.extra == {"locality_prompt": "Unrelated passage", "locality_ground_truth": ""}
    assert c.rephrase == () and c.extra == {"ood_rephrase": "Tell me about x."}


def test_rome_counterfact_layout(tmp_path):
    rec = {
        "case_id": 4496, "pararel_idx": 1,
        "requested_rewrite": {"prompt": "{} passed away in", "relation_id": "P20", "subject": "May",
                              "target_new": {"str": "Birmingham", "id": "Q1"},
                              "target_true": {"str": "Indy", "id": "Q2"}},
        "paraphrase_prompts": ["May succumbed at"], "neighborhood_prompts": ["Jake died at", "Henry died in"],
        "portability": {"New Question": "Q?", "New Answer": "A"},
    }
    [edit] = read_edits(write(tmp_path, jsonl(rec)))
    assert (edit.id, edit.prompt, edit.target) == ("4496", "May passed away in", "Birmingham")
    assert edit.subject == "May"
    assert edit.rephrase == ("May succumbed at",)
    assert edit.locality == (LocalityProbe("Jake died at", "Indy"), LocalityProbe("Henry died in", "Indy"))
    assert edit.portability == (PortabilityProbe("Q?", "A"),)
    assert edit.extra["requested_rewrite"]["target_true"]["str"] == "Indy"


@pytest.mark.skipif(not (DATA / "zsre/zsre_mend_eval_portability_gpt4.json").exists(), reason="no ZsRE data")
def test_shipped_zsre_file():
    edits = read_edits(DATA / "zsre/zsre_mend_eval_portability_gpt4.json")
    assert len(edits) == 1037 and len({e.id for e in edits}) == 1037
    first = edits[0]
    assert first.prompt == "When was the inception of IAAF Combined Events Challenge?"
    assert first.target == "2006"
    loc = LocalityProbe("nq question: what is the name of the last episode of spongebob", "The String")
    assert first.locality == (loc,)
    assert first.portability[0].answer == "Athletics" and first.extra["answers"] == ["1998"]
    assert first.source.endswith(":2") and edits[1].source.endswith(":20")


@pytest.mark.skipif(not (DATA / "counterfact/counterfact-edit.json").exists(), reason="no CounterFact data")
def test_shipped_counterfact_file():
    edits = read_edits(DATA / "counterfact/counterfact-edit.json")
    assert len(edits) == 10000 and len({e.id for e in edits}) == 10000
    first = edits[0]
    assert (first.id, first.target) == ("0", "English")
    assert first.prompt == "The mother tongue of Danielle Darrieux is"
    assert first.locality == (LocalityProbe("Michel Rocard is a native speaker of", "French"),)
    assert first.extra["ground_truth"] == "French"


# --- sources -------------------------------------------------------------------------------------


def test_stdin_dash():
    edits = read_edits("-", stdin=io.StringIO(jsonl({"prompt": "a", "target": "b"})))
    assert edits[0].source == "<stdin>:1" and edits[0].id == "stdin:1"


def test_stdin_bytes_are_checked_for_utf8():
    raw = b'{"prompt": "a", "target": "b"}\n{"prompt": "\xff", "target": "b"}\n'
    stream = io.TextIOWrapper(io.BytesIO(raw))
    assert problems_of("-", stdin=stream)[0].startswith("<stdin>:2: encoding: not valid UTF-8")


def test_round_trip_through_native_jsonl(tmp_path):
    original = read_edits(write(tmp_path, json.dumps([{
        "src": "Q?", "alt": "A", "rephrase": "Q2?", "loc": "nq question: L", "loc_ans": "LA", "subject": "S",
        "portability": {"New Question": "P?", "New Answer": "PA"}}]), "zsre.json"))
    original += read_edits(write(tmp_path, jsonl({"prompt": "p", "target": "t", "irrelevant": "i"})))
    path = write(tmp_path, jsonl(*(e.to_json() for e in original)), "audit.jsonl")
    again = read_edits(path)
    assert [replace(e, source="") for e in again] == [replace(e, source="") for e in original]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="does not exist") as info:
        read_edits(tmp_path / "nope.jsonl")
    assert not isinstance(info.value, InputProblems)
    with pytest.raises(BadInputError, match="is a directory"):
        read_edits(tmp_path)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n  \n", "[]", " [ ]\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:1: edits: no edits found"]


@pytest.mark.parametrize(
    "record, prefix",
    [
        ({"target": "b"}, "prompt: missing"),
        ({"prompt": "a"}, "target: missing"),
        ({"src": "a"}, "alt: missing"),
        ({"alt": "a"}, "src: missing"),
        ({"prompt": "a", "rephrase_prompt": "r"}, "target_new: missing"),
        ({"subject": "s"}, "prompt: missing (expected a native record with prompt/target, a ZsRE record"),
        ({"prompt": "  ", "target": "b"}, "prompt: empty string"),
        ({"prompt": "a", "target": 3}, "target: expected a string, got a number (3)"),
        ({"prompt": "a", "target": None}, "target: expected a string, got null"),
        ({**OK, "rephrase": 1}, "rephrase: expected a string or a list of strings"),
        ({**OK, "rephrase": ["x", 2]}, "rephrase[1]: expected a string, got a number"),
        ({**OK, "locality": "x"}, "locality: expected a list of {prompt, answer} objects"),
        ({**OK, "locality": ["x"]}, "locality[0]: expected a {prompt, answer} object"),
        ({**OK, "locality": [{"prompt": "x"}]}, "locality[0].answer: missing"),
        ({**OK, "portability": [{"prompt": "", "answer": "y"}]}, "portability[0].prompt: empty"),
        ({**OK, "id": [1]}, "id: expected a string or an integer, got an array"),
        ({"src": "a", "alt": "b", "loc": "l"}, "loc_ans: missing"),
        ({"src": "a", "alt": "b", "portability": {"New Question": "q"}}, "portability.New Answer: missing"),
        ({"prompt": "a", "target_new": "b", "locality_prompt": "l"}, "locality_ground_truth: missing"),
        ({"requested_rewrite": {"prompt": "no slot", "subject": "s", "target_new": {"str": "n"},
                                "target_true": {"str": "t"}}},
         'requested_rewrite.prompt: expected a template with "{}"'),
        ({"requested_rewrite": {"prompt": "{} x", "subject": "s", "target_true": {"str": "t"}}},
         "requested_rewrite.target_new: missing"),
    ],
)
def test_bad_record_is_located(tmp_path, record, prefix):
    path = write(tmp_path, jsonl({"prompt": "ok", "target": "ok"}, record))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: {prefix}")


def test_bad_json_line_and_non_object(tmp_path):
    path = write(tmp_path, '{"prompt": "a", "target": "b"}\n{"prompt": "a",, }\n[1, 2]\n')
    assert problems_of(path) == [
        f"{path}:2: json: Expecting property name enclosed in double quotes (column 16)",
        f"{path}:3: record: expected a JSON object, got an array",
    ]


def test_non_utf8_names_line_of_first_bad_byte(tmp_path):
    path = write(tmp_path, b'{"prompt": "a", "target": "b"}\n\n{"prompt": "caf\xe9", "target": "b"}\n')
    assert problems_of(path) == [f"{path}:3: encoding: not valid UTF-8 (byte 0xe9 at column 16)"]


def test_duplicate_id_names_first_line(tmp_path):
    path = write(tmp_path, jsonl({"id": "x", "prompt": "a", "target": "b"}, {"prompt": "c", "target": "d"},
                                 {"id": "x", "prompt": "e", "target": "f"}))
    assert problems_of(path) == [f"{path}:3: id: duplicate id 'x' (first at line 1)"]


def test_json_array_problems_use_object_start_line_and_all_are_reported(tmp_path):
    records = [{"src": "a", "alt": "b"}, {"src": "c"}, 5, {"case_id": 1, "prompt": "p", "target_new": 2},
               {**OK, "id": 7}, {**OK, "id": "7"}]
    text = json.dumps(records, indent=2)
    path = write(tmp_path, text, "data.json")
    lines = text.split("\n")
    starts = [i + 1 for i, line in enumerate(lines) if line.rstrip(",") in ("  {", "  5")]
    assert problems_of(path) == [
        f"{path}:{starts[1]}: alt: missing",
        f"{path}:{starts[2]}: record: expected a JSON object, got a number (5)",
        f"{path}:{starts[3]}: target_new: expected a string, got a number (2)",
        f"{path}:{starts[5]}: id: duplicate id '7' (first at line {starts[4]})",
    ]


def test_json_array_syntax_errors(tmp_path):
    path = write(tmp_path, '[\n  {"prompt": "a", "target": "b"}\n  {"prompt": "c"}\n]\n', "a.json")
    assert problems_of(path) == [f"{path}:3: json: Expecting ',' or ']' (column 3)"]
    path = write(tmp_path, '[{"prompt": "a", "target": "b"}]\nextra', "b.json")
    assert problems_of(path) == [f"{path}:2: json: Extra data after the array (column 1)"]
    path = write(tmp_path, '[\n{"prompt": "a", "target": }]', "c.json")
    assert problems_of(path)[0].startswith(f"{path}:2: json: Expecting value")


def test_pretty_printed_single_object_gets_a_hint(tmp_path):
    path = write(tmp_path, json.dumps({"prompt": "a", "target": "b"}, indent=2), "one.json")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: record: the file is a single JSON object")


def test_every_problem_of_one_record_is_reported(tmp_path):
    path = write(tmp_path, jsonl({"prompt": "", "target": 3, "rephrase": [None], "locality": {}}))
    assert problems_of(path) == [
        f"{path}:1: prompt: empty string",
        f"{path}:1: target: expected a string, got a number (3)",
        f"{path}:1: rephrase[0]: expected a string, got null",
        f"{path}:1: locality: expected a list of {{prompt, answer}} objects, got an object",
    ]
    assert str(InputProblems(problems_of(path))).count("\n") == 3
