"""Editing metrics against hand-computed values, on models whose predictions the test chooses."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import math
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from tokenizers import processors
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from wiseedit.tokens import encode_pair, left_padded_prompts, right_padded
from wiseedit.evaluation.metrics import (
    OOD_LOSS_THRESHOLD,
    agreement,
    answer_loss,
    argmax_predictions,
    generation_accuracy,
    generation_scores,
    ood_generalized,
    target_perplexity,
    token_accuracy,
)
from wiseedit.methods.none import NoEdit
from wiseedit.testing.tiny import tiny_config, tiny_tokenizer

FRANCE, NURSE = "The capital of France is", "Alice works as a nurse in"


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


class PrefixModel(nn.Module):
    """A "language model" whose next-token distribution after a given prefix is set by hand:
    ``table[prefix ids] = {token: probability}``, the rest of the mass spread evenly; any prefix not
    in the table gets uniform logits. Returns an object with ``.logits`` (B, T, V) like HF models."""

    def __init__(self, vocab_size, table, on_forward=None):
        super().__init__()
        self.vocab_size, self.table, self.on_forward = vocab_size, table, on_forward
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, input_ids, attention_mask=None):
        if self.on_forward:
            self.on_forward(input_ids, attention_mask)
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab_size)
        for b in range(batch):
            for t in range(length):
                spec = self.table.get(tuple(input_ids[b, : t + 1].tolist()))
                if spec:
                    rest = (1 - sum(spec.values())) / (self.vocab_size - len(spec))
                    probs = torch.full((self.vocab_size,), rest, dtype=torch.float64)
                    for token, p in spec.items():
                        probs[token] = p
                    logits[b, t] = probs.log().float()
        return SimpleNamespace(logits=logits)


class Recorder(NoEdit):
    """The identity method, recording every mask it is asked to route on."""

    def __init__(self, model, tokenizer):
        super().__init__(model, tokenizer)
        self.masks = []

    @contextmanager
    def query_tokens(self, mask):
        self.masks.append(mask.clone())
        with super().query_tokens(mask):
            yield


def predicting(tok, prompt, answer, correct, wrong=5, p=0.9):
    """Table entries making argmax right at the answer positions listed in `correct`, wrong elsewhere."""
    e = encode_pair(tok, prompt, answer)
    table = {}
    for i, token in enumerate(e.answer_ids):
        prefix = e.prompt_ids + e.answer_ids[:i]
        table[prefix] = {token if i in correct else wrong: p}
    return table


def test_encode_pair_takes_answer_tokens_in_context(tok):
    e = encode_pair(tok, FRANCE, "Paris")
    full = tok(FRANCE + " Paris")["input_ids"]
    assert list(e.prompt_ids) == tok(FRANCE)["input_ids"] and e.prompt_ids[0] == tok.bos_token_id
    assert list(e.prompt_ids + e.answer_ids) == full
    assert tok.decode(list(e.answer_ids)) == " Paris"


def test_encode_pair_falls_back_when_prompt_is_not_a_prefix(tok):
    backend = copy.deepcopy(tok.backend_tokenizer)  # a variant that appends EOS to every sequence
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_token_id), ("</s>", tok.eos_token_id)])
    eos_tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                      pad_token="<pad>")
    assert eos_tok(FRANCE)["input_ids"][-1] == tok.eos_token_id
    assert encode_pair(eos_tok, FRANCE, "Paris") == encode_pair(tok, FRANCE, "Paris")


def test_right_and_left_padding(tok):
    long, short = encode_pair(tok, FRANCE, "Paris and"), encode_pair(tok, "Bob plays the", "Paris")
    batch = right_padded([long, short], pad_id=0)
    n_long, n_short = len(long.prompt_ids) + 3, len(short.prompt_ids) + 2
    assert batch.input_ids.shape == (2, n_long)
    assert batch.attention_mask.sum(1).tolist() == [n_long, n_short]
    assert batch.prompt_mask.sum(1).tolist() == [len(long.prompt_ids), len(short.prompt_ids)]
    assert batch.answer_spans == ((len(long.prompt_ids), n_long), (len(short.prompt_ids), n_short))
    assert batch.input_ids[1, batch.answer_mask[1]].tolist() == list(short.answer_ids)
    assert batch.input_ids[1, n_short:].tolist() == [0] * (n_long - n_short)
    assert not (batch.prompt_mask & batch.answer_mask).any()
    prompts = left_padded_prompts([long, short], pad_id=0)
    assert prompts.input_ids[1, -len(short.prompt_ids):].tolist() == list(short.prompt_ids)
    assert prompts.attention_mask[1].tolist() == [0] * (len(long.prompt_ids) - len(short.prompt_ids)) + [
        1] * len(short.prompt_ids)


def test_token_accuracy_hand_cases_and_prompt_only_routing(tok):
    pairs = [(FRANCE, "Paris"), (FRANCE, "Paris and"), (NURSE, "Paris and")]
    table = {**predicting(tok, *pairs[0], correct={0}),  # 1 of 2 answer tokens right
             **predicting(tok, *pairs[1], correct={0, 2})}  # 2 of 3
    table.update(predicting(tok, *pairs[2], correct={0, 1, 2}))  # all 3
    # The prefixes of pairs 0 and 1 share the first answer position; both entries say "right".
    model = PrefixModel(len(tok), table)
    method = Recorder(model, tok)
    seen = []
    model.on_forward = lambda ids, mask: seen.append(method._query_mask is not None)
    assert token_accuracy(model, tok, pairs, method=method, batch_size=2) == [0.5, 2 / 3, 1.0]
    assert seen == [True, True] and len(method.masks) == 2  # every forward inside query_tokens
    first = right_padded([encode_pair(tok, *p) for p in pairs[:2]], tok.pad_token_id)
    assert torch.equal(method.masks[0], first.prompt_mask)
    assert token_accuracy(model, tok, pairs) == [0.5, 2 / 3, 1.0]  # no method, one batch


def test_locality_is_agreement_with_the_unedited_predictions(tok):
    pairs = [(NURSE, "Paris")]
    before = PrefixModel(len(tok), predicting(tok, *pairs[0], correct=set(), wrong=7))
    after_table = predicting(tok, *pairs[0], correct=set(), wrong=7)
    e = encode_pair(tok, *pairs[0])
    after_table[e.prompt_ids + e.answer_ids[:1]] = {9: 0.9}  # the edit changed the 2nd prediction
    after = PrefixModel(len(tok), after_table)
    predicted_before = argmax_predictions(before, tok, pairs)
    assert predicted_before == [[7, 7]]
    assert agreement(predicted_before, argmax_predictions(after, tok, pairs)) == [0.5]
    assert agreement(predicted_before, argmax_predictions(before, tok, pairs)) == [1.0]
    assert agreement([[1, 2, 3]], [[1, 5, 3]]) == [2 / 3]
    with pytest.raises(ValueError):
        agreement([[1, 2]], [[1]])


def test_target_perplexity_by_hand(tok):
    e = encode_pair(tok, FRANCE, "Paris")  # two answer tokens, given probabilities 1/2 and 1/4
    table = {e.prompt_ids: {e.answer_ids[0]: 0.5}, e.prompt_ids + e.answer_ids[:1]: {e.answer_ids[1]: 0.25}}
    model = PrefixModel(len(tok), table)
    [loss] = answer_loss(model, tok, [(FRANCE, "Paris")])
    assert loss == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    assert target_perplexity(model, tok, [(FRANCE, "Paris")]) == [pytest.approx(2 ** 1.5, rel=1e-6)]


def test_ood_threshold_is_minus_log_point_eight(tok):
    assert OOD_LOSS_THRESHOLD == -math.log(0.8)
    assert not ood_generalized(OOD_LOSS_THRESHOLD)  # strictly below counts
    assert ood_generalized(math.nextafter(OOD_LOSS_THRESHOLD, 0.0))
    e = encode_pair(tok, FRANCE, "Paris")
    prefixes = (e.prompt_ids, e.prompt_ids + e.answer_ids[:1])
    for p, expected in ((0.9, True), (0.81, True), (0.79, False)):
        model = PrefixModel(len(tok), {pre: {a: p} for pre, a in zip(prefixes, e.answer_ids)})
        [loss] = answer_loss(model, tok, [(FRANCE, "Paris")])
        assert loss == pytest.approx(-math.log(p), rel=1e-6)
        assert ood_generalized(loss) is expected


def bigram_llama(tok, successor):
    """A one-layer Llama whose greedy next token depends only on the current one: ``successor[a]``
    (attention and MLP outputs zeroed, so the residual stream is the token's embedding)."""
    hidden = 32
    assert len(successor) <= hidden
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok), layers=1, hidden=hidden)).eval()
    with torch.no_grad():
        layer = model.model.layers[0]
        for weight in (layer.self_attn.o_proj.weight, layer.mlp.down_proj.weight,
                       model.model.embed_tokens.weight, model.lm_head.weight):
            weight.zero_()
        for k, (a, b) in enumerate(successor.items()):
            model.model.embed_tokens.weight[a, k] = 1.0
            model.lm_head.weight[b, k] = 10.0
    return model


def test_generation_accuracy_batched_with_left_padding(tok):
    full = encode_pair(tok, FRANCE, "Paris and")  # prompt ends "is"; answer " Pa", "ris", " and"
    short = encode_pair(tok, "Bob plays the", "Paris")  # a shorter prompt: padded on the left
    a1, a2, a3 = full.answer_ids
    assert len({full.prompt_ids[-1], short.prompt_ids[-1], a1, a2, a3}) == 5
    # Greedy chains: "is" -> " Pa" -> "ris" -> " and"; "the" -> " Pa" -> ...
    model = bigram_llama(tok, {full.prompt_ids[-1]: a1, short.prompt_ids[-1]: a1, a1: a2, a2: a3})
    method = Recorder(model, tok)
    pairs = [(FRANCE, "Paris and"), ("Bob plays the", "Paris"), (FRANCE, "Paris at"), (NURSE, "Paris")]
    scores = generation_scores(model, tok, pairs, method=method, batch_size=4)
    assert [s.accuracy for s in scores][:3] == [1.0, 1.0, 2 / 3]
    assert [s.exact_match for s in scores][:3] == [True, True, False]
    assert scores[0].text == " Paris and"
    assert scores[3].accuracy == 0.0  # "in" has no successor: the model says token 0
    assert len(method.masks) == 1
    prompts = left_padded_prompts([encode_pair(tok, *p) for p in pairs], tok.pad_token_id)
    assert torch.equal(method.masks[0], prompts.attention_mask.bool())
    assert generation_accuracy(model, tok, pairs[:3], batch_size=2) == [1.0, 1.0, 2 / 3]
    assert token_accuracy(model, tok, pairs[:3]) == [1.0, 1.0, 2 / 3]  # the same model, teacher-forced
