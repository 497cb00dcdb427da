"""Turning (prompt, answer) text pairs into token batches: the one tokenisation rule every method
and metric shares, so that "the answer tokens" mean the same thing everywhere.

Rule: the answer follows the prompt after one space. The answer's tokens are those of
``tokenizer(prompt + " " + answer)`` beyond ``tokenizer(prompt)``; when the prompt's tokens are not
a prefix of the joint tokens (a BPE merge across the boundary), the answer is tokenised on its own
(with its leading space, without special tokens) and appended to the prompt's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class EncodedPairs:
    input_ids: torch.Tensor       # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)
    prompt_mask: torch.Tensor     # (B, T) True on prompt tokens (all tokens of a row without answer)
    labels: torch.Tensor          # (B, T) answer token ids at answer positions, -100 elsewhere
    spans: list[tuple[int, int]]  # per row, [start, end) of the answer tokens


def pair_token_ids(tokenizer, prompt: str, answer: str | None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one pair under the rule above."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    if answer is None:
        return prompt_ids, []
    full = tokenizer(f"{prompt} {answer}")["input_ids"]
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return prompt_ids, full[len(prompt_ids):]
    return prompt_ids, tokenizer(f" {answer}", add_special_tokens=False)["input_ids"]


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str | None]]) -> EncodedPairs:
    """Tokenise `pairs` into one right-padded batch."""
    rows = [pair_token_ids(tokenizer, p, a) for p, a in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_id_of(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    prompt_mask = torch.zeros((batch, width), dtype=torch.bool)
    labels = torch.full((batch, width), -100, dtype=torch.long)
    spans = []
    for r, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        input_ids[r, :n] = torch.tensor(p + a)
        attention_mask[r, :n] = 1
        prompt_mask[r, : len(p)] = True
        if a:
            labels[r, len(p):n] = torch.tensor(a)
        spans.append((len(p), n))
    return EncodedPairs(input_ids, attention_mask, prompt_mask, labels, spans)


def special_token_mask(tokenizer, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) True where `input_ids` is one of the tokenizer's special tokens (BOS, EOS, PAD...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)
