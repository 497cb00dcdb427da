"""Prefill vs decode, whatever transformers calls the KV cache: a decode step never decides anew.

transformers 5.24 renamed the cache keyword of ``forward`` (``past_key_values`` -> ``cache``); hooks
that looked the cache up by name took every decode step for a new prompt. These tests watch real
``generate`` calls on every tiny architecture and count the decisions WISE and RECIPE take in one.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from wiseedit.edits.record import EditRecord
from wiseedit.models.kv_cache import extends_cache
from wiseedit.recipe.prefix import PromptInjector
from wiseedit.testing import tiny_model, tiny_tokenizer
from wiseedit.testing.generation import greedy_left_padded
from wiseedit.wise.method import WiseMethod

ARCHS = ("llama", "mistral", "qwen2", "gpt2", "gptj")
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _generate(model, tok, prompts, **kw):
    return greedy_left_padded(model, tok, prompts, NEW_TOKENS, **kw)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beams", [1, 2])
def test_every_generate_call_after_the_first_extends_the_cache(arch, beams, tok):
    model = tiny_model(arch, tok, seed=len(arch))
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(extends_cache(kwargs)), with_kwargs=True)
    _generate(model, tok, ["The capital of Zorvia is", "Alice plays"], num_beams=beams)
    assert seen == [False] + [True] * (NEW_TOKENS - 1)


def test_a_plain_forward_is_a_prefill(tok):
    model = tiny_model("llama", tok)
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(extends_cache(kwargs)), with_kwargs=True)
    with torch.no_grad():
        model(**tok(["Alice plays the"], return_tensors="pt"))
        model(**tok(["Alice plays the"], return_tensors="pt"), use_cache=True)
    assert seen == [False, False]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_wise_decode_steps_continue_each_rows_latch(arch, tok):
    """WISE decides at every position from the tokens up to it (wiseedit.wise.routing): a decode step
    must start from its row's latch, so what generate produces is what one forward over the prompt and
    the generated tokens predicts at every generated position."""
    model = tiny_model(arch, tok, ffn_mult=16)
    method = WiseMethod.create(model, tok, {"n_iter": 5, "num_templates": 1})
    method.apply([EditRecord(prompt="The capital of Zorvia is", target="Paris", id="e0")])
    out = _generate(model, tok, ["The capital of Zorvia is", "Music, art and science are"])  # (B, P + N)
    assert method.layer.last_choice.tolist()[0] >= 0  # the edited row was routed through decoding
    mask = (out != tok.pad_token_id).long()
    positions = (mask.cumsum(1) - 1).clamp_min(0)  # left padding: positions as generate counts them
    with torch.no_grad():
        logits = model(input_ids=out, attention_mask=mask, position_ids=positions).logits  # (B, P + N, V)
    predicted = logits[:, -NEW_TOKENS - 1:-1].argmax(-1)
    assert torch.equal(predicted, out[:, -NEW_TOKENS:])


def test_recipe_retrieves_once_per_generate_call_and_keeps_the_prefix(tok):
    model = tiny_model("llama", tok)
    d = model.get_input_embeddings().embedding_dim
    calls = []

    def retrieve(input_ids, mask):  # (B, T), (B, T) -> (B, l, d), (B,): a prompt for row 0 only
        calls.append(input_ids.shape)
        prompts = torch.randn(input_ids.shape[0], 3, d, generator=torch.Generator().manual_seed(0))
        return prompts, torch.arange(input_ids.shape[0]) == 0

    injector = PromptInjector(model, retrieve, prompt_tokens=3)
    injector.attach()
    try:
        together = _generate(model, tok, ["The capital of Zorvia is", "Alice plays"])
    finally:
        injector.detach()
    assert len(calls) == 1
    plain = _generate(model, tok, ["Alice plays"])  # row 1 got no prompt: exactly the base model's text
    assert torch.equal(together[1, -NEW_TOKENS:], plain[0, -NEW_TOKENS:])
