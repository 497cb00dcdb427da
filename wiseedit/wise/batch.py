"""The training batch of one WISE optimisation: every edit under every context template, plus the
irrelevant rows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.tokens import TokenBatch, encode_pairs, special_token_mask


@dataclass(frozen=True)
class EditBatch(TokenBatch):
    """A right-padded :class:`~wiseedit.tokens.TokenBatch` whose edit rows come first, then the irrelevant
    rows (no answer); `prompt_mask` is the routing mask (the tokens the router looks at: each row's
    prompt, without template context or special tokens) and `labels` the targets."""

    num_edit_rows: int = 0
    bare_rows: tuple[int, ...] = ()  # edit rows without template context: "{}" rows and rehearsed edits


def build_batch(tokenizer, edits: Sequence[EditRecord], templates: Sequence[str],
                irrelevant: Sequence[str], rehearsed: Sequence[EditRecord] = ()) -> EditBatch:
    """Rows ``template.format(prompt) + " " + target`` for each edit and template, then one row per
    irrelevant text (no target).

    The router is trained on the tokens it will see at inference: the edit prompt's own tokens,
    not the template's context (generic text that the side memory must *not* learn to react to),
    and never special tokens such as BOS, which every input shares.
    """
    pairs = [(t.format(e.prompt), e.target) for e in edits for t in templates]
    pairs += [(e.prompt, e.target) for e in rehearsed]
    pairs += [(text, None) for text in irrelevant]
    enc = encode_pairs(tokenizer, pairs)
    row_templates = [t for _ in edits for t in templates] + ["{}"] * len(rehearsed)
    route = _routing_mask(tokenizer, enc, row_templates)
    return EditBatch(enc.input_ids, enc.attention_mask, route, enc.answer_mask, enc.answer_spans,
                     num_edit_rows=len(row_templates),
                     bare_rows=tuple(r for r, t in enumerate(row_templates) if t == "{}"))


def build_prompt_batch(tokenizer, prompts: Sequence[str], templates: Sequence[str]) -> TokenBatch:
    """Every prompt under every template, without targets, with the routing mask of
    :func:`build_batch` as ``prompt_mask`` (to score a memory on the edits it holds)."""
    enc = encode_pairs(tokenizer, [(t.format(p), None) for p in prompts for t in templates])
    return replace(enc, prompt_mask=_routing_mask(tokenizer, enc, [t for _ in prompts for t in templates]))


def _routing_mask(tokenizer, enc: TokenBatch, row_templates: Sequence[str]) -> torch.Tensor:
    route = enc.prompt_mask & ~special_token_mask(tokenizer, enc.input_ids)
    for r, template in enumerate(row_templates):
        context = template.split("{}")[0].rstrip()
        if context:  # the tokens of "<context>." come first; the prompt's tokens follow
            route[r, : len(tokenizer(context)["input_ids"])] = False
    return route
