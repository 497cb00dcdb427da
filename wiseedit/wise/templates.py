"""WISE's context templates: short texts the model itself writes, put before each edit's prompt so
the edit is learned in several contexts (wise.md section 4). Generated once per model, greedily,
and saved with the delta so that results reproduce."""

from __future__ import annotations

import torch

TEMPLATE_SEEDS = ("I", "You", "Because", "Yes", "Q: ")
TEMPLATE_LENGTHS = (5, 10)  # new tokens per continuation


@torch.no_grad()
def generate_templates(model, tokenizer, count: int = 10) -> list[str]:
    """``"{}"`` followed by `count` templates ``"<greedy continuation>. {}"`` (lengths in the outer
    order, seeds in the inner one).

    One greedy run per seed, as long as the longest template it gives: greedy decoding of the same
    prompt gives the same first tokens however many follow (EOS is held off up to each length by
    ``min_new_tokens`` either way), so the shorter template is the start of the longer run."""
    device = next(model.parameters()).device
    wanted = [(length, seed) for length in TEMPLATE_LENGTHS for seed in TEMPLATE_SEEDS][:count]
    longest: dict[str, int] = {}
    for length, seed in wanted:
        longest[seed] = max(longest.get(seed, 0), length)
    continued = {}
    for seed, length in longest.items():
        enc = tokenizer(seed, return_tensors="pt").to(device)
        out = model.generate(**enc, max_new_tokens=length, min_new_tokens=length, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        continued[seed] = out[0, enc["input_ids"].shape[1]:]                  # (length,) new token ids
    templates = ["{}"]
    for length, seed in wanted:
        text = tokenizer.decode(continued[seed][:length], skip_special_tokens=True)
        text = (seed + text).replace("{", " ").replace("}", " ").strip()
        templates.append(f"{text}. {{}}")
    return templates
