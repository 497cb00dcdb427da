"""Token batches for training rows: (prompt, answer) pairs where the answer may be absent.

The tokenisation rule is the one of :mod:`wiseedit.evaluation.batching` (shared by every method and
metric, so "the answer tokens" mean the same thing everywhere); a row without an answer is its
prompt's tokens alone, every one of them a prompt token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from wiseedit.evaluation.batching import encode_pair, pad_token_id


@dataclass
class EncodedPairs:
    input_ids: torch.Tensor       # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)
    prompt_mask: torch.Tensor     # (B, T) True on prompt tokens (all tokens of a row without answer)
    labels: torch.Tensor          # (B, T) answer token ids at answer positions, -100 elsewhere


def pair_token_ids(tokenizer, prompt: str, answer: str | None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one pair; no answer ids when `answer` is None."""
    if answer is None:
        return list(tokenizer(prompt)["input_ids"]), []
    pair = encode_pair(tokenizer, prompt, answer)
    return list(pair.prompt_ids), list(pair.answer_ids)


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str | None]]) -> EncodedPairs:
    """Tokenise `pairs` into one right-padded batch."""
    rows = [pair_token_ids(tokenizer, p, a) for p, a in pairs]
    width = max(len(p) + len(a) for p, a in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_token_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    prompt_mask = torch.zeros((batch, width), dtype=torch.bool)
    labels = torch.full((batch, width), -100, dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        input_ids[r, :n] = torch.tensor(p + a)
        attention_mask[r, :n] = 1
        prompt_mask[r, : len(p)] = True
        if a:
            labels[r, len(p):n] = torch.tensor(a)
    return EncodedPairs(input_ids, attention_mask, prompt_mask, labels)


def special_token_mask(tokenizer, input_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) True where `input_ids` is one of the tokenizer's special tokens (BOS, EOS, PAD...)."""
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, special)
