"""EasyEdit's KnowEdit layouts, unknown-field warnings and record numbering in JSON arrays.

The samples are written here from KnowEdit's public description (examples/KnowEdit.md of EasyEdit):
generated with varied probe counts and ground-truth shapes rather than one fixed record.
"""

from __future__ import annotations

import json
import random
import warnings

import pytest

from wiseedit.edits import EditRecord, LocalityProbe, PortabilityProbe, read_edits
from wiseedit.errors import BadInputError, EditFileWarning, InputProblems

PORTABILITY_KINDS = ("Reasoning", "Logical_Generalization", "Subject_Aliasing")
LOCALITY_KINDS = ("Relation_Specificity", "Forgetfulness")


def truth(rng: random.Random, answer: str):
    """One answer in one of the shapes KnowEdit uses: a string, a list of aliases, a list of alias lists."""
    return rng.choice([answer, [answer, answer + " (alias)"], [[answer, "alias"], ["other answer"]]])


def probes(rng: random.Random, kinds, tag: str) -> tuple[dict, list[tuple[str, str, str]]]:
    """A KnowEdit probe object with 0-3 probes of a random subset of `kinds`, and what should be read."""
    out, expected = {}, []
    for kind in rng.sample(kinds, rng.randint(1, len(kinds))):
        items = []
        for j in range(rng.randint(0, 3)):
            prompt, answer = f"{tag} {kind} question {j} is", f"{tag}-{kind}-{j}"
            items.append({"prompt": prompt, "ground_truth": truth(rng, answer)})
            expected.append((prompt, answer, kind))
        out[kind] = items
    return out, expected


def knowedit_record(rng: random.Random, i: int, layout: str) -> tuple[dict, dict]:
    """(record, what it must read as) in `layout`: zsre, counterfact, recent or wikibio."""
    locality, loc = probes(rng, LOCALITY_KINDS, f"L{i}")
    if layout == "wikibio":
        record = {"text": f"This is a Wikipedia passage about person {i}.", "labels": f"Person {i} was a poet.",
                  "concept": f"person {i}", "locality": locality}
        return record, {"prompt": record["text"], "target": record["labels"], "subject": record["concept"],
                        "rephrase": (), "loc": loc, "port": []}
    portability, port = probes(rng, PORTABILITY_KINDS, f"P{i}")
    record = {"subject": f"S{i}", "prompt": f"The position held by S{i} is", "target_new": f"T{i}",
              "ground_truth": truth(rng, f"old{i}"), "portability": portability, "locality": locality}
    if layout == "zsre":
        record |= {"rephrase_prompt": f"What position does S{i} hold?", "cond": f"old{i} >> T{i} || ..."}
    return record, {"prompt": record["prompt"], "target": f"T{i}", "subject": f"S{i}",
                    "rephrase": (record["rephrase_prompt"],) if layout == "zsre" else (), "loc": loc, "port": port}


@pytest.mark.parametrize("layout", ["zsre", "counterfact", "recent", "wikibio"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knowedit_layouts_keep_every_probe_and_its_kind(tmp_path, layout, seed):
    rng = random.Random(seed * 10 + len(layout))
    pairs = [knowedit_record(rng, i, layout) for i in range(rng.randint(2, 6))]
    path = tmp_path / f"{layout}.json"
    path.write_text(json.dumps([r for r, _ in pairs], indent=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the layout's own fields raise no unknown-field warning
        records = read_edits(path)
    assert [r.id for r in records] == [f"{layout}:{n}" for n in range(1, len(pairs) + 1)]
    for record, (_, want) in zip(records, pairs):
        assert (record.prompt, record.target, record.subject) == (want["prompt"], want["target"], want["subject"])
        assert record.rephrase == want["rephrase"]
        assert record.locality == tuple(LocalityProbe(*p) for p in want["loc"])
        assert record.portability == tuple(PortabilityProbe(*p) for p in want["port"])
    # the audit log's native form keeps the kinds: reading it back gives the same records
    native = tmp_path / "native.jsonl"
    native.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    assert [(r.locality, r.portability) for r in read_edits(native)] == [(r.locality, r.portability) for r in records]


def test_knowedit_bad_probe_is_located(tmp_path):
    record = {"prompt": "p", "target_new": "t", "locality": {"Relation_Specificity": [
        {"prompt": "ok", "ground_truth": ["a"]}, {"prompt": "q", "ground_truth": []}, {"ground_truth": "x"}]}}
    path = tmp_path / "k.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(InputProblems) as info:
        read_edits(path)
    assert info.value.problems == [
        f"{path}:1: locality.Relation_Specificity[1].ground_truth: empty list: expected an answer",
        f"{path}:1: locality.Relation_Specificity[2].prompt: missing",
    ]


@pytest.mark.parametrize("keys", [("success", "locality"), ("K_F", "K_R")])
@pytest.mark.parametrize("n_edits,n_loc", [(2, 3), (3, 3), (1, 0)])
def test_sanitation_object(tmp_path, keys, n_edits, n_loc):
    edits = [{"question": f"What is thing {i}?", "ground_truth": f"old {i}", "target_new": "I don't know."}
             for i in range(n_edits)]
    locality = [{"question": f"Who is person {j}?", "ground_truth": [f"answer {j}"], "target_new": "I don't know."}
                for j in range(n_loc)]
    text = "{\n" + f'"{keys[0]}": [\n' + ",\n".join(json.dumps(e) for e in edits) + "\n],\n"
    text += f'"{keys[1]}": [\n' + ",\n".join(json.dumps(q) for q in locality) + "\n]\n}\n"
    path = tmp_path / "trivia_qa_test.json"
    path.write_text(text)
    records = read_edits(path)
    assert [(r.prompt, r.target, r.extra["ground_truth"]) for r in records] == [
        (e["question"], "I don't know.", e["ground_truth"]) for e in edits]
    assert [r.id for r in records] == [f"trivia_qa_test:{i}" for i in range(1, n_edits + 1)]
    assert [r.source for r in records] == [f"{path}:{3 + i}" for i in range(n_edits)]  # the line of each item
    for i, r in enumerate(records):  # locality question j goes to edit j % n_edits
        assert r.locality == tuple(LocalityProbe(f"Who is person {j}?", f"answer {j}")
                                   for j in range(n_loc) if j % n_edits == i)


def test_sanitation_locality_problem_is_located(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"success": [{"question": "q", "target_new": ""}],\n"locality": [\n{"ground_truth": "a"}]}')
    with pytest.raises(InputProblems) as info:
        read_edits(path)
    assert info.value.problems == [f"{path}:1: target_new: empty string", f"{path}:3: question: missing"]


@pytest.mark.parametrize("count", [1, 800])
def test_convsent_is_refused_in_one_sentence(tmp_path, count):
    rows = [{"ent": f"topic {i}", "pos": [f"I love topic {i}"], "neg": [f"I hate topic {i}"]} for i in range(count)]
    path = tmp_path / "blender_test.json"
    path.write_text(json.dumps(rows, indent=2))
    with pytest.raises(BadInputError) as info:
        read_edits(path)
    message = str(info.value)
    assert not isinstance(info.value, InputProblems) and "\n" not in message
    assert message.startswith(f"{path}:2: this is a ConvSent file") and "no prompt/target pair" in message


def test_unknown_fields_get_one_warning_per_file_naming_them(tmp_path):
    lines = [{"prompt": "a", "target": "b"}, {"prompt": "c", "target": "d", "rephase": "typo"},
             {"prompt": "e", "target": "f", "rephase": "again", "notes": 1}]
    path = tmp_path / "edits.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.warns(EditFileWarning) as caught:
        records = read_edits(path)
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        f"{path}:2: unknown field(s) 'rephase' (first at line 2), 'notes' (first at line 3)")
    assert records[1].rephrase == () and records[1].extra == {"rephase": "typo"}


@pytest.mark.parametrize("record", [
    {"subject": "s", "src": "q?", "pred": "x", "rephrase": "r?", "alt": "a", "answers": ["x"], "loc": "nq question: l",
     "loc_ans": "la", "cond": "x >> a", "portability": {"Recalled Relation": "(s, r, o)", "New Question": "n?",
                                                        "New Answer": "na"}},
    {"case_id": 0, "prompt": "p", "target_new": "t", "subject": "s", "ground_truth": "g", "rephrase_prompt": "r",
     "locality_prompt": "l", "locality_ground_truth": "la"},
    {"prompt": "p", "target_new": "t", "subject": "s", "ood_rephrase": "o", "locality_prompt": "l",
     "locality_ground_truth": ""},
    {"case_id": 1, "pararel_idx": 2, "requested_rewrite": {"prompt": "{} plays", "subject": "Bo",
                                                           "target_new": {"str": "x"}, "target_true": {"str": "y"}}, "paraphrase_prompts": ["a"], "neighborhood_prompts": ["b"],
     "attribute_prompts": ["c"], "generation_prompts": ["d"]},
])
def test_the_shipped_layouts_raise_no_warning(tmp_path, record):
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_edits(path)


@pytest.mark.parametrize("count", [2, 7])
def test_one_line_json_array_numbers_its_records(tmp_path, count):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"prompt": f"p{i}", "target": f"t{i}"} for i in range(count)]))  # one line
    records = read_edits(path)
    assert [r.id for r in records] == [f"x:{i}" for i in range(1, count + 1)]
    assert {r.source for r in records} == {f"{path}:1"}


def test_jsonl_ids_stay_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt": "a", "target": "b"}\n\n{"prompt": "c", "target": "d"}\n')
    assert [r.id for r in read_edits(path)] == ["x:1", "x:3"]


def test_cli_prints_the_warning_as_one_line(tmp_path):
    from typer.testing import CliRunner

    from wiseedit.cli.app import app

    path = tmp_path / "e.jsonl"
    path.write_text('{"prompt": "a", "target": "b", "rephase": "c"}\n')
    result = CliRunner().invoke(app, ["edit", str(path), "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (f"warning: {path}:1: unknown field(s) 'rephase' (first at line 1): no layout reads them, "
                        "so they are ignored; check their spelling")
    assert lines[1].startswith("error: ")


def test_record_native_json_omits_absent_kinds():
    record = EditRecord("p", "t", id="i", locality=(LocalityProbe("l", "a"),),
                        portability=(PortabilityProbe("q", "b", "Reasoning"),))
    assert record.to_json()["locality"] == [{"prompt": "l", "answer": "a"}]
    assert record.to_json()["portability"] == [{"prompt": "q", "answer": "b", "kind": "Reasoning"}]


def test_eval_reports_locality_and_portability_per_kind(saved_tiny_models, tmp_path):
    """A KnowEdit file evaluates with Loc and Port (they were "—": the probes were dropped), and per kind."""
    from wiseedit.cli.eval_output import eval_table
    from wiseedit.evaluation.runner import EvalConfig, evaluate

    rng = random.Random(5)
    rows = [knowedit_record(rng, i, "zsre")[0] for i in range(4)]
    for row in rows:  # every kind present at least once
        row["portability"].setdefault("Reasoning", []).append({"prompt": "Bob plays the", "ground_truth": "violin"})
        row["locality"].setdefault("Forgetfulness", []).append({"prompt": "Alice works", "ground_truth": ["as"]})
    path = tmp_path / "ZsRE-test-all.json"
    path.write_text(json.dumps(rows, indent=2))
    report = evaluate(str(saved_tiny_models[0]), EvalConfig(suite=str(path), methods=("grace",), T=(2,)), device="cpu")
    [row] = report.rows()
    assert row["loc"] is not None and row["port"] is not None
    by_kind = report.document["metrics"]["grace"]["2"]["by_kind"]
    for figure in ("port", "loc"):
        kinds = {k for s in report.samples for k in s[f"{figure}_kind"]}
        assert {key for key in by_kind if key.startswith(figure)} == {f"{figure}:{k}" for k in kinds}
        for kind in kinds:
            per_block = []
            for block in (0, 1):
                values = [v for s in report.samples if s["block"] == block
                          for v, k in zip(s[figure], s[f"{figure}_kind"]) if k == kind]
                if values:
                    per_block.append(sum(values) / len(values))
            assert by_kind[f"{figure}:{kind}"] == pytest.approx(sum(per_block) / len(per_block), abs=1e-6)
            assert row[f"{figure}:{kind}"] == by_kind[f"{figure}:{kind}"]
    table = eval_table(report.rows(), "t")
    assert "Port Reasoning" in [c.header for c in table.columns]
