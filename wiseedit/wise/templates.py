"""WISE's context templates: short texts the model itself writes, put before each edit's prompt so
the edit is learned in several contexts (wise.md section 4). Generated once per model, greedily,
and saved with the delta so that results reproduce."""

from __future__ import annotations

import torch

TEMPLATE_SEEDS = ("I", "You", "Because", "Yes", "Q: ")
TEMPLATE_LENGTHS = (5, 10)  # new tokens per continuation


@torch.no_grad()
def generate_templates(model, tokenizer, count: int = 10) -> list[str]:
    """``"{}"`` followed by `count` templates ``"<greedy continuation>. {}"``."""
    device = next(model.parameters()).device
    templates = ["{}"]
    for length in TEMPLATE_LENGTHS:
        for seed in TEMPLATE_SEEDS:
            if len(templates) > count:
                break
            enc = tokenizer(seed, return_tensors="pt").to(device)
            out = model.generate(**enc, max_new_tokens=length, min_new_tokens=length, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            text = (seed + text).replace("{", " ").replace("}", " ").strip()
            templates.append(f"{text}. {{}}")
    return templates[: count + 1]
