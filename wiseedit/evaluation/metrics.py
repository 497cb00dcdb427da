"""The editing metrics, as pure functions of a model, its tokenizer and (optionally) an editing method.

Every function takes `pairs`, a sequence of ``(prompt, answer)`` strings, tokenises them by the rule
of :mod:`wiseedit.tokens`, runs the model in batches under ``torch.no_grad`` on the
model's device, and returns one number per pair. When `method` is given, each forward pass runs inside
``method.query_tokens(prompt_mask)``, so a method that routes or retrieves decides from the prompt
alone, never from the answer it is being scored on. The model is put in eval mode for the call and
given back in the mode it was in.

Which metric is which (see docs/evaluation.md): Rel = :func:`token_accuracy` on (prompt, target),
Gen = the same on (rephrase, target), portability likewise; Loc = :func:`agreement` of
:func:`argmax_predictions` before the first edit and after the last; hallucination Rel =
:func:`target_perplexity`; temporal = :func:`ood_generalized` of :func:`answer_loss`;
:func:`generation_accuracy` is the greedy-decoding variant users actually see.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from wiseedit.devices import model_device
from wiseedit.tokens import chunks, encode_pair, left_padded_prompts, pad_token_id, right_padded

Pair = tuple[str, str]

#: WISE's temporal rule: an example generalises when its mean answer NLL is below -ln(0.8), i.e. the
#: geometric-mean probability of the answer tokens is above 0.8.
OOD_LOSS_THRESHOLD = -math.log(0.8)


@dataclass(frozen=True)
class PairScore:
    """Teacher-forced result for one pair, per answer token."""

    predicted: tuple[int, ...]  # argmax of the logits at t-1, for each answer position t
    target: tuple[int, ...]  # the answer token at t
    nll: tuple[float, ...]  # -log p(answer token at t | tokens before t)

    @property
    def accuracy(self) -> float:
        return sum(p == t for p, t in zip(self.predicted, self.target)) / len(self.target)

    @property
    def mean_nll(self) -> float:
        return sum(self.nll) / len(self.nll)


@dataclass(frozen=True)
class GenerationScore:
    """Greedy-decoding result for one pair: `predicted` has as many ids as the answer."""

    predicted: tuple[int, ...]  # the generated ids (the pad id where generation stopped early)
    target: tuple[int, ...]
    text: str  # the generated ids decoded, special tokens skipped

    @property
    def accuracy(self) -> float:
        return sum(p == t for p, t in zip(self.predicted, self.target)) / len(self.target)

    @property
    def exact_match(self) -> bool:
        return self.predicted == self.target


@contextmanager
def _inference(model) -> Iterator[None]:
    """No gradients, eval mode, and the caller's train/eval mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _routing(method, mask: torch.Tensor):
    """``method.query_tokens(mask)`` when a method is given, else a no-op context."""
    return method.query_tokens(mask) if method is not None else nullcontext()


def score_pairs(model, tokenizer, pairs: Sequence[Pair], method=None,
                batch_size: int = 32) -> list[PairScore]:
    """Teacher-forced predictions and NLLs at the answer positions of each pair (one pass for all
    the teacher-forced metrics below)."""
    pad, device, scores = pad_token_id(tokenizer), model_device(model), []
    with _inference(model):
        for chunk in chunks(pairs, batch_size):
            encoded = [encode_pair(tokenizer, prompt, answer) for prompt, answer in chunk]
            batch = right_padded(encoded, pad).to(device)
            with _routing(method, batch.prompt_mask):
                out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            logits = out.logits if hasattr(out, "logits") else out  # (B, T, V)
            # Logits at t-1 predict token t: score the shifted positions whose target is an answer token.
            scored = batch.answer_mask[:, 1:]  # (B, T-1)
            picked = logits[:, :-1][scored].float()  # (N, V), rows in (batch, position) order
            gold = batch.input_ids[:, 1:][scored]  # (N,)
            nll = -F.log_softmax(picked, dim=-1).gather(1, gold[:, None]).squeeze(1)  # (N,)
            predicted = picked.argmax(dim=-1)  # (N,)
            lengths = [end - start for start, end in batch.answer_spans]
            for p, g, n in zip(predicted.split(lengths), gold.split(lengths), nll.split(lengths)):
                scores.append(PairScore(tuple(p.tolist()), tuple(g.tolist()), tuple(n.tolist())))
    return scores


def token_accuracy(model, tokenizer, pairs: Sequence[Pair], method=None, batch_size: int = 32) -> list[float]:
    """Per pair, the fraction of answer positions t where argmax(logits at t-1) is the token at t."""
    return [s.accuracy for s in score_pairs(model, tokenizer, pairs, method, batch_size)]


def argmax_predictions(model, tokenizer, pairs: Sequence[Pair], method=None,
                       batch_size: int = 32) -> list[list[int]]:
    """Per pair, the model's argmax token at each answer position (teacher-forced)."""
    return [list(s.predicted) for s in score_pairs(model, tokenizer, pairs, method, batch_size)]


def agreement(before: Sequence[Sequence[int]], after: Sequence[Sequence[int]]) -> list[float]:
    """Per pair, the fraction of positions where two models' predictions agree (Loc: the unedited
    model's :func:`argmax_predictions`, taken before the first edit, against the edited model's)."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} predictions before but {len(after)} after")
    out = []
    for i, (b, a) in enumerate(zip(before, after)):
        if len(b) != len(a) or not b:
            raise ValueError(f"pair {i}: {len(b)} positions before but {len(a)} after")
        out.append(sum(x == y for x, y in zip(b, a)) / len(b))
    return out


def answer_loss(model, tokenizer, pairs: Sequence[Pair], method=None, batch_size: int = 32) -> list[float]:
    """Per pair, the mean negative log-likelihood (nats) of the answer tokens given the prompt."""
    return [s.mean_nll for s in score_pairs(model, tokenizer, pairs, method, batch_size)]


def target_perplexity(model, tokenizer, pairs: Sequence[Pair], method=None,
                      batch_size: int = 32) -> list[float]:
    """Per pair, exp of the mean answer-token NLL (the hallucination suite's Rel; lower is better)."""
    return [math.exp(loss) for loss in answer_loss(model, tokenizer, pairs, method, batch_size)]


def ood_generalized(loss: float, threshold: float = OOD_LOSS_THRESHOLD) -> bool:
    """The temporal suite's rule: generalised when the mean answer NLL is strictly below -ln(0.8)."""
    return loss < threshold


def generation_scores(model, tokenizer, pairs: Sequence[Pair], method=None,
                      batch_size: int = 32) -> list[GenerationScore]:
    """Greedy-decode as many tokens as each answer has, from the prompt alone, and compare.

    Prompts are left-padded (so every row continues from its last column) and the attention mask is
    passed; decoding stops early only where the model emits EOS, the remaining positions then count
    as wrong. Routing methods see the prompt's attention mask through ``query_tokens``.
    """
    pad, device, scores = pad_token_id(tokenizer), model_device(model), []
    with _inference(model):
        for chunk in chunks(pairs, batch_size):
            encoded = [encode_pair(tokenizer, prompt, answer) for prompt, answer in chunk]
            batch = left_padded_prompts(encoded, pad).to(device)
            longest = max(len(e.answer_ids) for e in encoded)
            with _routing(method, batch.attention_mask.bool()):
                out = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                     max_new_tokens=longest, do_sample=False,
                                     num_beams=1, pad_token_id=pad)
            new = out[:, batch.input_ids.shape[1]:].tolist()  # (B, <= longest) generated ids
            for e, row in zip(encoded, new):
                n = len(e.answer_ids)
                predicted = tuple(row[:n]) + (pad,) * max(0, n - len(row))
                text = tokenizer.decode(list(predicted), skip_special_tokens=True)
                scores.append(GenerationScore(predicted, e.answer_ids, text))
    return scores


def generation_accuracy(model, tokenizer, pairs: Sequence[Pair], method=None,
                        batch_size: int = 32) -> list[float]:
    """Per pair, the fraction of greedily generated tokens equal to the answer's (see
    :func:`generation_scores`, which also gives the exact-match flag and the text)."""
    return [s.accuracy for s in generation_scores(model, tokenizer, pairs, method, batch_size)]
