"""The built-in world: deterministic generation, disjoint splits, and a shipped model that knows it."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from wiseedit.world.generator import build_world
from wiseedit.world.relations import FIRST_SYLLABLES, OBJECTS, RELATIONS
from wiseedit.world.suite import EDITED_RELATIONS, invented_edits, object_variants, world_edits


def test_world_is_deterministic_and_rich_enough():
    a, b = build_world(), build_world()
    assert a.entities == b.entities and a.facts == b.facts and a.split_of == b.split_of
    assert len(a.entities) >= 300 and len(RELATIONS) >= 6
    assert all(len(r.phrasings) >= 6 for r in RELATIONS)
    assert any(r.phrasings[0].startswith("Q:") or "Q:" in p for r in RELATIONS for p in r.phrasings)
    assert any(" " in o for objects in OBJECTS.values() for o in objects)  # multi-word objects
    types = [r.object_type for r in RELATIONS]
    assert len(set(types)) < len(types)  # an object type shared by two relations
    assert build_world(seed=7).facts != a.facts


def test_suite_splits_never_overlap_and_edits_are_counterfactual():
    world = build_world()
    evaluated = world_edits("eval", world=world)
    training = world_edits("train", world=world)
    assert len(evaluated) >= 1000
    assert not {e.subject for e in evaluated} & {e.subject for e in training}
    pool = set(world.entities_in("irrelevant"))
    for edit in evaluated[:200]:
        assert edit.target != edit.extra["ground_truth"]
        assert len(edit.rephrase) == 5 and edit.prompt not in edit.rephrase
        same, other = edit.locality
        assert edit.subject in same.prompt and world.split_of[edit.subject] == "eval"
        assert any(p in edit.irrelevant for p in pool)
    per_person = {}
    for edit in evaluated:
        per_person.setdefault(edit.subject, set()).add(edit.extra["relation"])
    assert all(len(r) == EDITED_RELATIONS for r in per_person.values())


def test_invented_people_are_new_names_edited_like_the_train_split():
    world = build_world()
    edits = invented_edits(40, world=world)
    people = {e.subject for e in edits}
    assert len(people) == 40 and len(edits) == 40 * EDITED_RELATIONS
    assert not people & set(world.entities)  # nobody the model read about, the eval people included
    firsts = [name.split()[0].lower() for name in people]  # 2 of the world's first-name syllables each
    assert all(len(f) == 4 and f[:2] in FIRST_SYLLABLES and f[2:] in FIRST_SYLLABLES for f in firsts)
    for edit in edits:
        same, other = edit.locality
        assert edit.subject in same.prompt
        assert any(p in other.prompt for p in people - {edit.subject})  # other-person probes: invented too
        assert edit.id.startswith("world-invented-") and edit.target != edit.extra["ground_truth"]
    eval_texts = {t for e in world_edits("eval", world=world) for t in (e.prompt, *e.rephrase)}
    assert not {t for e in edits for t in (e.prompt, *e.rephrase)} & eval_texts
    assert [e.to_json() for e in edits] == [e.to_json() for e in invented_edits(40, world=world)]  # stable


def test_object_variants_edit_each_fact_to_distinct_objects_of_its_type():
    world = build_world()
    training = world_edits("train", world=world)
    variants = object_variants(training, 4, world=world)
    assert len(variants) == 4 * len(training) and len({v.id for v in variants}) == len(variants)
    assert set(training) <= set(variants)  # the original edits, unchanged, among them
    by_fact = {}
    for v in variants:
        by_fact.setdefault((v.subject, v.extra["relation"]), []).append(v)
    assert len(by_fact) == len(training)
    for (subject, relation), group in by_fact.items():
        objects = [v.target for v in group]
        assert len(set(objects)) == 4 and world.facts[(subject, relation)] not in objects
        assert set(objects) <= set(OBJECTS[world.relation(relation).object_type])
        assert len({(v.prompt, v.rephrase, v.locality) for v in group}) == 1  # only the object differs
    assert [v.target for v in variants] == [v.target for v in object_variants(training, 4, world=world)]
    assert [v.id for v in variants[:50]] != [v.id for v in sorted(variants, key=lambda v: v.id)[:50]]  # shuffled


@pytest.mark.parametrize("alias, offset", [("world", 0), ("world-xl", 7)])
def test_shipped_model_loads_offline_and_knows_the_world(alias, offset, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseedit.models import load_base, resolve_model
    from wiseedit.world.recall import recall_by_phrasing

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_model(alias)
    assert source.builtin and (source.path / "model.safetensors").stat().st_size < 25 * 2**20
    AutoTokenizer.from_pretrained(source.path)
    AutoModelForCausalLM.from_pretrained(source.path)
    loaded = load_base(alias, device="cpu")
    world = build_world()
    # a sample of 20 people (each model its own), every relation and phrasing
    report = recall_by_phrasing(loaded.model, loaded.tokenizer, world, subjects=world.entities[offset::20])
    assert report["min"] >= 0.95, report
    shipped = json.loads((source.path / "recall.json").read_text())
    assert shipped["min"] >= 0.99, shipped


def test_both_world_models_read_the_same_tokens():
    from wiseedit.models.aliases import builtin_path

    assert (builtin_path("world") / "tokenizer.json").read_bytes() == \
        (builtin_path("world-xl") / "tokenizer.json").read_bytes()


def test_world_export_into_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    shell = f"{sys.executable} -m wiseedit.world.suite --split facts | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.stdout.count("\n") == 1 and done.stderr == ""


def test_world_exports_as_readable_jsonl(tmp_path, capsys):
    from wiseedit.edits import read_edits
    from wiseedit.world.suite import main

    for split, count in (("facts", 400 * 7), ("train", 700)):
        main(["--split", split])
        path = tmp_path / f"{split}.jsonl"
        path.write_text(capsys.readouterr().out, encoding="utf-8")
        assert len(read_edits(path)) == count
    main(["--split", "eval", "--limit", "3"])
    first = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert first == [e.id for e in world_edits("eval")[:3]]


def _tiny_pretrain_config(**kw):
    from wiseedit.world.pretrain import PretrainConfig

    return PretrainConfig(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, epochs=2,
                          num_entities=12, batch_size=64, warmup_steps=2, probe_every=0, **kw)


def test_pretraining_resumes_exactly_after_a_stop(tmp_path):
    """A run stopped during its second epoch and started again ends with the weights of an unbroken run."""
    import pytest
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from wiseedit.models.aliases import builtin_path
    from wiseedit.world.pretrain import pretrain

    tokenizer = AutoTokenizer.from_pretrained(str(builtin_path("world")))
    torch.set_num_threads(1)
    pretrain(tmp_path / "straight", _tiny_pretrain_config(), log=lambda m: None, tokenizer=tokenizer)

    def stop_in_epoch_2(message):
        if message.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "stopped", _tiny_pretrain_config(), log=stop_in_epoch_2, tokenizer=tokenizer)
    assert (tmp_path / "stopped" / "checkpoint" / "state.json").exists()
    lines = []
    pretrain(tmp_path / "stopped", _tiny_pretrain_config(), log=lines.append, tokenizer=tokenizer)
    assert lines[0].startswith("resumed from") and "after epoch 1" in lines[0]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "stopped" / "checkpoint").exists()  # a finished run leaves no checkpoint
    log = (tmp_path / "stopped" / "train.log").read_text()
    assert "epoch 1/2" in log and "resumed from" in log and "epoch 2/2" in log

    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "other", _tiny_pretrain_config(), log=stop_in_epoch_2, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="another configuration"):
        pretrain(tmp_path / "other", _tiny_pretrain_config(seed=7), log=lambda m: None, tokenizer=tokenizer)
