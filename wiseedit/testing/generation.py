"""Batched greedy generation as callers run it: left-padded prompts, a KV cache, a fixed length."""

from __future__ import annotations

import torch


@torch.no_grad()
def greedy_left_padded(model, tokenizer, prompts: list[str], n: int, **generate_kwargs) -> torch.Tensor:
    """`n` greedy tokens for each prompt, the batch left-padded; returns ``generate``'s output
    (B, P + n), the prompts (padded to P) first. `generate_kwargs` go to ``generate`` (e.g. num_beams)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    return model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
