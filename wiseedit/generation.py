"""Greedy continuations of prompts, batched, for the before/after tables of ``wiseedit edit`` and the
side-by-side outputs of ``wiseedit load``.

Prompts are tokenised as the evaluation does (:mod:`wiseedit.tokens`), left-padded so
every row continues from its last column, and decoded greedily with the attention mask passed; the
editing methods attached to the model route on the prompt at prefill, so ``generate`` needs nothing
else from them.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch

from wiseedit.devices import model_device
from wiseedit.tokens import EncodedPair, chunks, left_padded_prompts, pad_token_id


@dataclass(frozen=True)
class Continuation:
    """What the model wrote after one prompt: its token ids (stopping at EOS) and their text."""

    ids: tuple[int, ...]
    text: str


def continue_prompts(model, tokenizer, prompt_ids: Sequence[Sequence[int]], max_new_tokens: Sequence[int],
                     *, method=None, batch_size: int = 16) -> list[Continuation]:
    """Greedily generate up to ``max_new_tokens[i]`` tokens after each tokenised prompt.

    `prompt_ids` are full model inputs (BOS included, as ``tokenizer(prompt)`` gives them). A row that
    emits EOS stops there; the EOS and what follows are dropped. `method`, when given, is told which
    tokens are the prompt (``query_tokens``), as the evaluator does.
    """
    if len(prompt_ids) != len(max_new_tokens):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(max_new_tokens)} lengths")
    pad, device = pad_token_id(tokenizer), model_device(model)
    eos = tokenizer.eos_token_id
    rows = [EncodedPair(tuple(ids), ()) for ids in prompt_ids]
    out: list[Continuation] = []
    was_training = model.training
    model.eval()
    try:
        for start, chunk in zip(range(0, len(rows), batch_size), chunks(rows, batch_size)):
            lengths = max_new_tokens[start:start + len(chunk)]
            batch = left_padded_prompts(chunk, pad).to(device)
            routing = method.query_tokens(batch.attention_mask.bool()) if method is not None else nullcontext()
            with torch.no_grad(), routing:
                generated = model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                           max_new_tokens=max(lengths), do_sample=False, num_beams=1,
                                           pad_token_id=pad)
            new = generated[:, batch.input_ids.shape[1]:].tolist()  # (B, <= max(lengths))
            for row, n in zip(new, lengths):
                ids = row[:n]
                if eos is not None and eos in ids:
                    ids = ids[:ids.index(eos)]
                out.append(Continuation(tuple(ids), tokenizer.decode(ids, skip_special_tokens=True)))
    finally:
        model.train(was_training)
    return out


def complete(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 20, *, method=None,
             batch_size: int = 16) -> list[str]:
    """The greedy continuation text of each prompt (at most `max_new_tokens` tokens, stopping at EOS)."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    found = continue_prompts(model, tokenizer, ids, [max_new_tokens] * len(ids), method=method,
                             batch_size=batch_size)
    return [c.text for c in found]
