"""Causal routing: at every position the side memory is used or not from the tokens up to it alone.

The decision (made in :meth:`wiseedit.wise.side_memory.SideMemoryLayer.forward`, from the hidden
states the layer sees) is a *latch*: position t of a row uses memory m when the most recent position
s <= t at which some memory recognised its input (its router fired) chose m; before the first such
position the row uses the main memory. So:

- a single forward over a text equals prefilling any prefix of it and decoding the rest with the KV
  cache, at every position (what the router does at t depends only on tokens <= t);
- an edit is seen by any caller whose text contains its prompt, teacher-forced scoring included
  (lm-eval-harness's ``prompt + " " + target``), without telling the model where the prompt ends;
- a text that never fires the router is bit-identical to the base model wherever it ends.

The only state that crosses calls is each row's latch after its last position, kept by the layer for
the next call *of the same generation*. What tells a new text from the next step of a generation is
the KV cache: :func:`install_call_hook` puts a pre-hook on the base model (the decoder stack, so calls
that bypass the LM head are covered too) that hands the layer, per call, a :class:`CallInfo`: which
positions may fire (not padding, not special tokens such as BOS that every input shares) and whether
the call continues a filled cache (:func:`wiseedit.models.kv_cache.extends_cache`, whatever keyword
transformers passes the cache under). That is the one hand-off; there is no query mask.

Beam search reorders rows between decode steps; the latch follows the row index. Beams of one
prompt share the prompt's latch, so they differ only if the router fires on a generated token of one
beam and not another (rare; documented in docs/wise.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from wiseedit.models.kv_cache import extends_cache


@dataclass
class CallInfo:
    """What the side-memory layer is told about the current forward call of the model."""

    routable: torch.Tensor | None = None  # (B, T) bool: positions whose input may fire the router; None: all
    continues: bool = False                # a decode step: start from the rows' latches of the last call


def install_call_hook(base_model: nn.Module, layer, special_ids: Sequence[int] = ()):
    """Before every forward of `base_model` (the decoder stack), set ``layer.call`` to that call's
    :class:`CallInfo`. Returns the hook's handle."""
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)

    def before_forward(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        mask = kwargs.get("attention_mask")
        routable = None
        if input_ids is not None:
            routable = ~torch.isin(input_ids, special.to(input_ids.device))                  # (B, T)
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                # a decode step's mask covers the cached positions too: its last T columns are this call's
                routable = routable & mask[:, -input_ids.shape[1]:].to(routable.device).bool()
        layer.call = CallInfo(routable=routable, continues=extends_cache(kwargs))
        return None

    return base_model.register_forward_pre_hook(before_forward, with_kwargs=True)


def latch(fires: torch.Tensor, choice: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Per position, the memory of the most recent firing position at or before it.

    fires (B, T) bool, choice (B, T) long (the memory chosen where it fires), start (B,) long (each
    row's latch before this call, -1: main memory) -> (B, T) long, -1 where nothing fired yet."""
    B, T = fires.shape
    positions = torch.arange(T, device=fires.device).expand(B, T)
    last = positions.masked_fill(~fires, -1).cummax(1).values                              # (B, T)
    picked = choice.gather(1, last.clamp_min(0))                                           # (B, T)
    return torch.where(last >= 0, picked, start[:, None].expand(B, T))
