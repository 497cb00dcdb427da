"""The baselines GRACE and FT-L behind the common method interface, on tiny llama and gpt2 models.

The tokenizer is the tiny one with a 1000-token budget, in which every target below is one token: on a
randomly initialised 6-layer model, one value vector at the last prompt token (GRACE) can set the next
token but cannot steer later ones through the untrained attention above it (measured: only the first
token of multi-token targets is recalled), so GRACE's recall is tested on one-token targets. FT-L changes
the weight at every position and is tested on a three-token target.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json

import pytest
import torch
from safetensors.torch import load, save

from wiseedit.baselines.ft_l import FineTuneConfig, FineTuneMethod
from wiseedit.baselines.grace import GraceConfig, GraceMethod
from wiseedit.baselines.grace.codebook import GraceCodebook
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import MethodState
from wiseedit.registry import method_class
from wiseedit.testing.tiny import tiny_model, tiny_tokenizer

ARCHS = ("llama", "gpt2")
EDITS = [
    EditRecord(prompt, target, id=str(i)) for i, (prompt, target) in enumerate([
        ("The capital of France is", "Rome"), ("Alice works as a nurse in", "Paris"),
        ("Bob plays the", "violin"), ("The sky is", "red"), ("My favourite colour is", "blue"),
        ("The train leaves the station at", "noon"), ("She speaks", "German"), ("Water boils at", "sea"),
        ("The Eiffel Tower is in", "London"), ("Cats and dogs are", "animals"),
    ])
]
UNRELATED = [
    "The capital of Italy is", "Water boils at one hundred", "Who wrote the novel?",
    "Q: Where does the river flow? A:", "The company was founded in the year",
    "Music, art and science are taught at the", "The grass is", "My favourite animal is", "Alice plays the",
    "Bob works in", "The river flows to the", "It was written by an", "She keeps cats at", "The school is in",
    "People keep dogs at", "The nurse speaks", "The tower is", "Every day the train",
    "Danielle speaks French and", "The year two thousand was",
]
FT_EDIT = EditRecord("The capital of France is", "Rome and Paris", id="ft")
# EasyEdit's lr 5e-4 takes the tiny llama's target NLL only from 7.73 to 6.14 in 25 steps (not recalled;
# measured), 5e-3 to 0.17: the tiny weights are initialised 10x larger than a 7B model's
FT_TINY = {"lr": 5e-3}



@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(vocab_size=1000)


def split_ids(tok, prompt: str, target: str) -> tuple[list[int], list[int]]:
    return tok(prompt)["input_ids"], tok(" " + target, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def teacher_forced(model, method, tok, prompt: str, target: str) -> tuple[float, torch.Tensor]:
    """(accuracy of the target tokens, logits) on prompt + target, the method routing on the prompt."""
    p, t = split_ids(tok, prompt, target)
    ids = torch.tensor([p + t])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, : len(p)] = True
    with method.query_tokens(mask):
        logits = model(input_ids=ids).logits
    hits = logits[0, len(p) - 1 : -1].argmax(-1) == torch.tensor(t)
    return hits.float().mean().item(), logits


@torch.no_grad()
def batch_logits(model, tok, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, T, V) of a right-padded batch and its attention mask (B, T)."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    return model(**enc).logits, enc["attention_mask"].bool()


def roundtrip(state: MethodState) -> MethodState:
    """The state as a delta directory stores it: JSON config and safetensors tensors."""
    tensors = {k: v.contiguous() for k, v in state.tensors.items()}
    return MethodState(json.loads(json.dumps(state.config)), load(save(tensors)),
                       settings=json.loads(json.dumps(state.settings)))


@torch.no_grad()
def greedy_without_cache(model, method, prompt_ids: torch.Tensor, n: int) -> torch.Tensor:
    """n greedy tokens, each from a full forward of prompt + tokens so far, routed on the prompt."""
    ids = prompt_ids
    for _ in range(n):
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, : prompt_ids.shape[1]] = True
        with method.query_tokens(mask):
            logits = model(input_ids=ids, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    return ids[:, prompt_ids.shape[1] :]


@torch.no_grad()
def generate(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         do_sample=False, pad_token_id=0)
    return out[:, ids.shape[1] :]


# --- GRACE -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ARCHS)
def grace_run(request, tok):
    """A tiny model with GRACE after the 10 edits, and its base model's accuracies beside it."""
    arch = request.param
    for edit in EDITS:
        assert len(split_ids(tok, edit.prompt, edit.target)[1]) == 1, edit.target
    model = tiny_model(arch, tok)
    method = GraceMethod.create(model, tok)
    base_acc = [teacher_forced(model, method, tok, e.prompt, e.target)[0] for e in EDITS]
    method.apply(EDITS)
    return arch, model, method, base_acc


def test_grace_recalls_all_ten_edits_at_the_end(grace_run, tok):
    arch, model, method, base_acc = grace_run
    assert sum(base_acc) == 0.0  # no target was the base model's prediction
    rel = [teacher_forced(model, method, tok, e.prompt, e.target)[0] for e in EDITS]
    assert rel == [1.0] * len(EDITS)
    assert method.summary()["entries"] == len(EDITS) and method.summary()["edits"] == len(EDITS)


def test_grace_leaves_unrelated_prompts_alone(grace_run, tok):
    arch, model, method, _ = grace_run
    edited, mask = batch_logits(model, tok, UNRELATED)  # keys at each row's last attended token
    base, _ = batch_logits(tiny_model(arch, tok), tok, UNRELATED)
    agree = edited.argmax(-1)[mask] == base.argmax(-1)[mask]
    assert agree.float().mean().item() == 1.0  # Loc = 1.0 on every token of the 20 prompts


def test_grace_restore_gives_identical_logits_and_detach_gives_base(grace_run, tok):
    arch, model, method, _ = grace_run
    fresh = tiny_model(arch, tok)
    restored = GraceMethod.restore(fresh, tok, roundtrip(method.state()))
    assert restored.state().config == method.state().config
    for e in EDITS:
        assert torch.equal(teacher_forced(fresh, restored, tok, e.prompt, e.target)[1],
                           teacher_forced(model, method, tok, e.prompt, e.target)[1])
    assert torch.equal(batch_logits(fresh, tok, UNRELATED)[0], batch_logits(model, tok, UNRELATED)[0])

    restored.detach()
    base = tiny_model(arch, tok)
    for e in EDITS:
        p, t = split_ids(tok, e.prompt, e.target)
        ids = torch.tensor([p + t])
        with torch.no_grad():
            assert torch.equal(fresh(input_ids=ids).logits, base(input_ids=ids).logits)


def test_grace_generate_produces_target_and_matches_teacher_forcing(grace_run, tok):
    arch, model, method, _ = grace_run
    base = tiny_model(arch, tok)
    for e in EDITS[:3]:
        p, t = split_ids(tok, e.prompt, e.target)
        ids = torch.tensor([p])
        out = generate(model, ids, 4)  # KV cache: routed once at prefill
        assert out[0, 0].item() == t[0]
        assert torch.equal(out, greedy_without_cache(model, method, ids, 4))
    for prompt in UNRELATED[:3]:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        assert torch.equal(generate(model, ids, 4), generate(base, ids, 4))


def test_grace_replace_all_keeps_the_prefill_decision_while_generating(tok):
    model = tiny_model("llama", tok)
    method = GraceMethod.create(model, tok, {"replacement": "all"})
    method.apply(EDITS[:1])
    p, t = split_ids(tok, EDITS[0].prompt, EDITS[0].target)
    ids = torch.tensor([p])
    assert torch.equal(generate(model, ids, 4), greedy_without_cache(model, method, ids, 4))
    assert generate(model, ids, 1)[0, 0].item() == t[0]


def test_grace_codebook_update_rule():
    book = GraceCodebook.empty(2, 3, "cpu", torch.float32)
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([1.5, 0.0])
    value = torch.zeros(3)
    assert book.insert(a, value, 1.0, torch.tensor([7])) == 0
    # same label within reach (1.5 <= 1.0 + 1.0): expand entry 0 to cover b, no new entry
    assert book.insert(b, value, 1.0, torch.tensor([7])) == 0 and len(book) == 1
    assert book.radii[0].item() == 1.5
    # different label within reach: split, both radii at most half the distance
    c = torch.tensor([0.0, 1.0])
    assert book.insert(c, value, 1.0, torch.tensor([8])) == 1
    assert book.radii.tolist() == [0.5, 0.5]
    # far away: a new entry with the full initial radius
    assert book.insert(torch.tensor([10.0, 0.0]), value, 1.0, torch.tensor([9, 9])) == 2
    assert book.radii[2].item() == 1.0 and book.labels.tolist()[2] == [9, 9]
    # the same key with a new label: that entry is taken over
    assert book.insert(c, value, 1.0, torch.tensor([5])) == 1 and len(book) == 3
    assert book.labels.tolist()[1] == [5, -1]
    queries = torch.tensor([[0.1, 0.0], [0.0, 0.9], [10.5, 0.0], [5.0, 5.0]])
    assert book.route(queries).tolist() == [0, 1, 2, -1]


def test_grace_config_presets_and_registry():
    paper = GraceConfig.from_options({"preset": "paper"})
    assert (paper.eps, paper.eps_unit, paper.value_init) == (1.0, "absolute", "cold")
    assert (paper.n_iter, paper.lr) == (100, 1.0)
    assert paper.replacement == "last" and paper.stop_loss is None
    assert GraceConfig.from_options({"preset": "paper", "eps": 2.0}).eps == 2.0
    with pytest.raises(BadInputError, match=r"unknown GRACE option\(s\): epsilon"):
        GraceConfig.from_options({"epsilon": 1.0})
    assert method_class("grace") is GraceMethod and method_class("ft-l") is FineTuneMethod


# --- FT-L ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ARCHS)
def ft_run(request, tok):
    arch = request.param
    model = tiny_model(arch, tok)
    method = FineTuneMethod.create(model, tok, FT_TINY)
    base_acc = teacher_forced(model, method, tok, FT_EDIT.prompt, FT_EDIT.target)[0]
    method.apply([FT_EDIT])
    return arch, model, method, base_acc


def test_ft_l_recalls_a_single_edit(ft_run, tok):
    arch, model, method, base_acc = ft_run
    assert len(split_ids(tok, FT_EDIT.prompt, FT_EDIT.target)[1]) == 3
    assert base_acc == 0.0
    assert teacher_forced(model, method, tok, FT_EDIT.prompt, FT_EDIT.target)[0] == 1.0


def test_ft_l_restore_gives_identical_weights_and_logits(ft_run, tok):
    arch, model, method, _ = ft_run
    state = method.state()
    base = tiny_model(arch, tok)
    w0, weight = base.get_submodule(method.path).weight, method.module.weight
    assert torch.equal(weight, (w0.float() + state.tensors["delta"]).to(weight.dtype))  # edited = W0 + delta
    fresh = tiny_model(arch, tok)
    restored = FineTuneMethod.restore(fresh, tok, roundtrip(state))
    assert torch.equal(restored.module.weight, weight)
    assert torch.equal(batch_logits(fresh, tok, UNRELATED + [FT_EDIT.prompt])[0],
                       batch_logits(model, tok, UNRELATED + [FT_EDIT.prompt])[0])


def test_ft_l_detach_restores_base_weights_exactly(ft_run, tok):
    arch, model, method, _ = ft_run
    fresh = tiny_model(arch, tok)
    restored = FineTuneMethod.restore(fresh, tok, roundtrip(method.state()))
    base = tiny_model(arch, tok).state_dict()
    changed = [k for k, v in fresh.state_dict().items() if not torch.equal(v, base[k])]
    assert changed == [method.path + ".weight"]  # only the edited module's weight moved
    restored.detach()
    assert all(torch.equal(v, base[k]) for k, v in fresh.state_dict().items())


def test_ft_l_norm_constraint_bounds_the_change(tok):
    model = tiny_model("llama", tok)
    method = FineTuneMethod.create(model, tok, {**FT_TINY, "norm_constraint": 1e-3})
    method.apply([FT_EDIT])
    assert 0 < method.delta.abs().max().item() <= torch.tensor(1e-3).item()  # the bound in float32


def test_ft_l_defaults_are_easyedit_ft():
    config = FineTuneConfig()
    assert (config.lr, config.n_iter, config.norm_constraint, config.stop_loss) == (5e-4, 25, None, 0.01)
