"""WISE's causal routing: one forward equals prefill + KV-cache decode at every position, and a plain
teacher-forced forward sees the edits (no query mask needed)."""

from __future__ import annotations

import pytest
import torch

from wiseedit.evaluation.metrics import token_accuracy
from wiseedit.models.kv_cache import cache_keyword, output_cache
from wiseedit.testing import tiny_model, tiny_tokenizer
from wiseedit.testing.edit_sets import edit_set
from wiseedit.wise.method import WiseMethod
from wiseedit.wise.routing import latch


def test_latch_keeps_the_most_recent_firing_memory():
    fires = torch.tensor([[False, True, False, True, False], [False] * 5])
    choice = torch.tensor([[0, 1, 0, 2, 0], [3, 3, 3, 3, 3]])
    out = latch(fires, choice, torch.tensor([-1, 4]))
    assert out.tolist() == [[-1, 1, 1, 2, 2], [4, 4, 4, 4, 4]]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(vocab_size=1000)


def _edited(arch, tok, options, count=3, seed=1):
    edits, unrelated = edit_set(seed, "cities", count=count, unrelated=6)
    model = tiny_model(arch, tok, ffn_mult=16)
    method = WiseMethod.create(model, tok, dict(options))
    method.apply(edits)
    return model, method, edits, unrelated


@torch.no_grad()
def _prefill_then_decode(model, ids: torch.Tensor, split: int) -> torch.Tensor:
    """Logits (T, V) of `ids` (1, T): a prefill of the first `split` tokens, then one token per step."""
    out = model(input_ids=ids[:, :split], use_cache=True)
    logits, cache = [out.logits[0]], output_cache(out)
    for t in range(split, ids.shape[1]):
        out = model(input_ids=ids[:, t:t + 1], use_cache=True, **{cache_keyword(model): cache})
        logits.append(out.logits[0])
        cache = output_cache(out)
    return torch.cat(logits)


@pytest.mark.parametrize("arch,options", [
    ("llama", {}),                                      # key router (default)
    ("gpt2", {}),
    ("llama", {"router": "norm"}),                      # the paper's score, last token
    ("qwen2", {"router": "norm", "pooling": "mean"}),   # the paper's score, running mean
])
def test_single_forward_equals_prefill_and_decode(tok, arch, options):
    model, method, edits, unrelated = _edited(arch, tok, {"n_iter": 20, "num_templates": 2, **options})
    texts = [f"{e.prompt} {e.target}. {u}" for e, u in zip(edits, unrelated)]     # edits, then more text
    texts += [f"Yes. {edits[0].prompt} {edits[0].target}", unrelated[-1], f"{unrelated[-2]} {edits[1].prompt}"]
    routed = 0
    for text in texts:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            whole = model(input_ids=ids).logits[0]                                # (T, V)
            routed += int((method.layer.last_choice >= 0).sum())
        for split in (1, ids.shape[1] // 2, ids.shape[1] - 1):
            torch.testing.assert_close(_prefill_then_decode(model, ids, split), whole, atol=1e-4, rtol=1e-4)
    assert routed >= len(edits)  # the comparison covered rows where the side memory is on


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_plain_teacher_forced_forward_sees_the_edits(tok, arch):
    """lm-eval-harness scores ``prompt + " " + target`` with no hint where the prompt ends."""
    model, method, edits, _ = _edited(arch, tok, {})
    pairs = [(e.prompt, e.target) for e in edits]
    plain = token_accuracy(model, tok, pairs)                    # no method: no query mask
    marked = token_accuracy(model, tok, pairs, method=method)    # the evaluator's query mask
    assert plain == marked
    assert sum(plain) / len(plain) >= 0.99
