"""Tokenisation and padded token batches: the one rule every method, metric and generation uses, so
that "the answer tokens" mean the same thing everywhere.

Tokenisation rule (the one the WISE/EasyEdit evaluation uses, made robust):

1. ``full = tokenizer(prompt + " " + answer)`` and ``head = tokenizer(prompt)``, both with the
   tokenizer's special tokens (so BOS is prepended where the model expects it).
2. If ``head`` is a prefix of ``full``, the prompt tokens are ``head`` and the answer tokens are
   ``full[len(head):]``: the answer is tokenised in context, exactly as the model sees it.
3. Otherwise (a tokenizer that appends EOS, or one whose merges cross the prompt/answer boundary),
   the prompt tokens are ``head`` without its trailing special tokens and the answer tokens are
   ``tokenizer(" " + answer, add_special_tokens=False)``, concatenated.

Both rules give a prompt part that ends where the answer starts, so "logits at t-1 predict token t"
scores exactly the answer tokens, and the same prompt tokens are used for teacher forcing and for
generation. A row without an answer (:func:`encode_prompt`, a training row the model must ignore) is
its prompt's tokens alone, every one of them a prompt token.

Every padded batch is one :class:`TokenBatch`: right-padded prompt+answer rows for a teacher-forced
pass (:func:`right_padded`, :func:`encode_pairs`), or left-padded prompts for ``generate``
(:func:`left_padded_prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence, TypeVar

import torch

from wiseedit.errors import BadInputError

T = TypeVar("T")


@dataclass(frozen=True)
class EncodedPair:
    """The token ids of one prompt and of its answer (see the module docstring for the rule)."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]


@dataclass(frozen=True)
class TokenBatch:
    """Token rows padded to one width: prompt+answer rows right-padded for one teacher-forced forward
    pass, or prompts alone left-padded (every row ends at the last column) for ``generate``."""

    input_ids: torch.Tensor  # (B, T) long: the tokens, then (right) or after (left) the padding
    attention_mask: torch.Tensor  # (B, T) long: 1 on real tokens, 0 on padding
    prompt_mask: torch.Tensor  # (B, T) bool: True on prompt tokens (what routing may look at)
    answer_mask: torch.Tensor  # (B, T) bool: True on answer tokens (what is scored)
    answer_spans: tuple[tuple[int, int], ...]  # per row, [start, end) positions of the answer

    @property
    def labels(self) -> torch.Tensor:
        """(B, T) long: the answer token ids at answer positions, -100 (ignored by the loss) elsewhere."""
        return self.input_ids.masked_fill(~self.answer_mask, -100)

    def to(self, device: torch.device | str) -> "TokenBatch":
        """The same batch (of the same class, other fields kept) with its tensors on `device`."""
        return replace(self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device),
                       prompt_mask=self.prompt_mask.to(device), answer_mask=self.answer_mask.to(device))


def pad_token_id(tokenizer) -> int:
    """The id used for padding: the tokenizer's pad token, else its EOS, else 0 (always masked out)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def encode_pair(tokenizer, prompt: str, answer: str) -> EncodedPair:
    """Tokenise one (prompt, answer) pair by the rule of the module docstring."""
    full = list(tokenizer(prompt + " " + answer)["input_ids"])
    head = list(tokenizer(prompt)["input_ids"])
    if full[: len(head)] == head and len(full) > len(head):
        prompt_ids, answer_ids = head, full[len(head):]
    else:
        special = set(tokenizer.all_special_ids)
        while head and head[-1] in special:
            head.pop()
        prompt_ids = head
        answer_ids = list(tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
    if not prompt_ids:
        raise BadInputError(f"the prompt {prompt!r} has no tokens, so its answer cannot be scored")
    if not answer_ids:
        raise BadInputError(f"the answer {answer!r} (to {prompt!r}) has no tokens to score")
    return EncodedPair(tuple(prompt_ids), tuple(answer_ids))


def encode_prompt(tokenizer, prompt: str) -> EncodedPair:
    """A prompt without an answer: ``tokenizer(prompt)``'s ids, special tokens included, no answer ids."""
    return EncodedPair(tuple(tokenizer(prompt)["input_ids"]), ())


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str | None]]) -> TokenBatch:
    """Tokenise `pairs` into one right-padded batch; a pair whose answer is None is its prompt alone."""
    encoded = [encode_prompt(tokenizer, p) if a is None else encode_pair(tokenizer, p, a) for p, a in pairs]
    return right_padded(encoded, pad_token_id(tokenizer))


def special_token_mask(tokenizer, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) True where `input_ids` is one of the tokenizer's special tokens (BOS, EOS, PAD...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)


def right_padded(pairs: Sequence[EncodedPair], pad_id: int) -> TokenBatch:
    """Pack encoded pairs into one right-padded :class:`TokenBatch` (an answer-less row: prompt only)."""
    width = max(len(p.prompt_ids) + len(p.answer_ids) for p in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, T)
    prompt_mask = torch.zeros((len(pairs), width), dtype=torch.bool)  # (B, T)
    answer_mask = torch.zeros((len(pairs), width), dtype=torch.bool)  # (B, T)
    spans = []
    for row, pair in enumerate(pairs):
        start, end = len(pair.prompt_ids), len(pair.prompt_ids) + len(pair.answer_ids)
        input_ids[row, :end] = torch.tensor(pair.prompt_ids + pair.answer_ids)
        attention[row, :end] = 1
        prompt_mask[row, :start] = True
        answer_mask[row, start:end] = True
        spans.append((start, end))
    return TokenBatch(input_ids, attention, prompt_mask, answer_mask, tuple(spans))


def left_padded_prompts(pairs: Sequence[EncodedPair], pad_id: int) -> TokenBatch:
    """Pack the prompts of encoded pairs into one left-padded :class:`TokenBatch` (no answer tokens:
    every real token is a prompt token)."""
    width = max(len(p.prompt_ids) for p in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)  # (B, P)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, P)
    for row, pair in enumerate(pairs):
        n = len(pair.prompt_ids)
        input_ids[row, width - n:] = torch.tensor(pair.prompt_ids)
        attention[row, width - n:] = 1
    no_answer = torch.zeros((len(pairs), width), dtype=torch.bool)  # (B, P)
    return TokenBatch(input_ids, attention, attention.bool(), no_answer, ((width, width),) * len(pairs))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items` of at most `size` elements."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]
