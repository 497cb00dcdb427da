"""Routing decisions made once per input, at prefill, and kept while ``generate`` decodes.

A forward pre-hook on the top-level model sees every call's ``attention_mask`` and KV cache (found by
type, whatever transformers names it: :mod:`wiseedit.models.kv_cache`). A call without a filled KV cache
is a *prefill*: the router will decide per row
from that call's tokens (padding masked out, and outside the prompt masked out when the evaluator set
a query mask). A call with a filled cache is a *decode step*: the decision of the prefill is kept, so a
generated answer is produced by the same memory that recognised the prompt.

Beam search expands rows before the prefill and reorders only beams of the same prompt, which share a
decision, so decisions stay valid there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from wiseedit.models.kv_cache import extends_cache


@dataclass
class RoutingState:
    """What the router of one model knows about the current forward call."""

    token_mask: torch.Tensor | None = None  # (B, T) tokens to route on; None: all
    decoding: bool = False                   # a KV-cache decode step: reuse `chosen`
    chosen: torch.Tensor | None = None       # (B,) memory index per row of the last prefill, -1 = main


def install_routing_hook(model: nn.Module, state: RoutingState, query_mask: Callable[[], torch.Tensor | None],
                         special_ids: Sequence[int] = ()) -> torch.utils.hooks.RemovableHandle:
    """Keep `state` up to date on every forward of `model`; `query_mask()` gives the evaluator's mask.

    Special tokens (`special_ids`: BOS, EOS, PAD) are never routed on: every input shares them.
    """
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)

    def before_forward(module, args, kwargs):
        if extends_cache(kwargs):
            state.decoding = True
            return None
        state.decoding, state.chosen = False, None
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            mask = args[1]
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        token_mask = mask.bool() if mask is not None and mask.dim() == 2 else None
        not_special = None if input_ids is None else ~torch.isin(input_ids, special.to(input_ids.device))
        for extra in (query_mask(), not_special):
            if extra is None:
                continue
            if token_mask is None:
                token_mask = extra.bool()
            elif extra.shape == token_mask.shape:
                token_mask = token_mask & extra.to(token_mask.device).bool()
        state.token_mask = token_mask
        return None

    return model.register_forward_pre_hook(before_forward, with_kwargs=True)
