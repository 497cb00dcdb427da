"""The library API behind the CLI: wiseedit.edit / load / load_edited / merge_shards."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json

import pytest
import torch

import wiseedit
from wiseedit.edits import EditRecord
from wiseedit.errors import BadInputError

EDITS = [EditRecord("The capital of France is", "Rome", id="a"),
         EditRecord("Bob plays the", "violin", id="b")]
UNRELATED = "The capital of Italy is"



@pytest.fixture(scope="module")
def grace_edit(saved_tiny_models, tmp_path_factory):
    """GRACE taught EDITS on the tiny llama; the delta saved in its own folder."""
    out = tmp_path_factory.mktemp("api") / "grace.wiseedit"
    return wiseedit.edit(str(saved_tiny_models[0]), EDITS, method="grace", out=out, device="cpu")


def logits(model, tokenizer, prompt):
    with torch.no_grad():
        return model(**tokenizer(prompt, return_tensors="pt")).logits


def test_edit_returns_the_saved_delta_and_the_outcomes(grace_edit):
    assert grace_edit.method == "grace" and grace_edit.delta.num_edits == 2
    assert [o.id for o in grace_edit.outcomes] == ["a", "b"] and grace_edit.recalled == 2
    assert all(o.after.strip().startswith(o.target) for o in grace_edit.outcomes)
    assert grace_edit.edited.model.wiseedit is grace_edit.edited.method
    config = json.loads((grace_edit.delta.path / "wiseedit_config.json").read_text())
    assert config["edited_module"] == grace_edit.edited.method.summary()["module"]
    assert config["seed"] == 0  # GRACE's own seed setting


def test_load_gives_the_edited_model_with_bit_identical_logits(grace_edit, saved_tiny_models):
    model = wiseedit.load(str(saved_tiny_models[0]), grace_edit.delta.path, device="cpu")
    assert model.wiseedit.summary()["entries"] == 2
    tokenizer = grace_edit.edited.tokenizer
    for prompt in (EDITS[0].prompt, UNRELATED):
        assert torch.equal(logits(model, tokenizer, prompt), logits(grace_edit.edited.model, tokenizer, prompt))
    ids = tokenizer(EDITS[0].prompt, return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(out[0, ids.shape[1]:]).strip() == "Rome"


def test_generate_base_detaches_then_restores_the_delta(grace_edit, saved_tiny_models):
    edited = wiseedit.load_edited(None, grace_edit.delta.path, device="cpu")  # base: the recorded one
    plain = wiseedit.load(str(saved_tiny_models[0]), device="cpu")
    assert plain.wiseedit is None
    prompts = [e.prompt for e in EDITS] + [UNRELATED]
    before = edited.generate(prompts, 3)
    base = edited.generate_base(prompts, 3)
    assert base == wiseedit.load_edited(str(saved_tiny_models[0]), device="cpu").generate(prompts, 3)
    assert base[:2] != before[:2] and base[2] == before[2]  # edits changed, the unrelated prompt did not
    assert edited.generate(prompts, 3) == before and edited.model.wiseedit is edited.method


def test_force_never_replaces_a_folder_that_is_not_a_delta(saved_tiny_models, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(BadInputError, match="not a wiseedit delta"):
        wiseedit.edit(str(saved_tiny_models[0]), EDITS, method="none", out=precious, overwrite=True, device="cpu")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_continuing_with_out_leaves_the_original_delta_untouched(grace_edit, tmp_path):
    original = {p.name: p.read_bytes() for p in grace_edit.delta.path.iterdir()}
    more = [EditRecord("The sky is", "red", id="c")]
    result = wiseedit.edit(None, more, delta=grace_edit.delta.path, out=tmp_path / "copy", device="cpu")
    assert result.method == "grace" and result.delta.num_edits == 3 and result.recalled == 1
    assert {p.name: p.read_bytes() for p in grace_edit.delta.path.iterdir()} == original
