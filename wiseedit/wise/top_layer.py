"""A Llama-family decoder layer computed at a few positions: the top layer of WISE's fast path.

The loss reads the logits before the target tokens only, so the top layer's queries, attention
output and MLP are needed at those N positions alone; its keys and values at every position they
attend to. :func:`top_layer_at` computes that from the layer's own modules (norms, projections,
MLP), with the rotary tables and attention masks of :class:`TopPositions` computed once per edit.
Which models it fits is decided by checking it against the model's own forward
(:meth:`wiseedit.wise.upper_stack.UpperStack.verified`), not by this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def llama_like(layer: nn.Module, call: tuple) -> bool:
    """Whether `layer` (called with `call`, its recorded (args, kwargs)) has the parts of a Llama
    decoder layer that :func:`top_layer_at` uses; the result is checked against the model anyway."""
    attn = getattr(layer, "self_attn", None)
    return (attn is not None and "position_embeddings" in call[1]
            and all(hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp"))
            and all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")))


def _rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's ``x * cos + rotate_half(x) * sin``, with ``rotate_half(x) * sin`` (the halves of x
    swapped, the first negated) taken as one roll of x times sin with its first half negated (the
    same products)."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin


def _signed(sin: torch.Tensor) -> torch.Tensor:
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


@dataclass
class TopPositions:
    """What the top layer at N positions needs besides its input, the same at every step of an edit.

    The layer's input is given as rows of an (R, W) grid of tokens: every position of the grid, or
    only the tokens some position attends to (``inside``: padding, and a row's tokens after its last
    position, are masked out of attention and read by nothing, so their keys and values are left
    zero). The queries are laid out per grid row, (R, Q) slots for at most
    Q positions per row (a row's spare slots repeat its first position and are dropped after
    attention), so that attention runs on the rows' keys and values as they are, not on a copy of
    them per position."""

    grid: tuple[int, int]         # (R, W)
    inside: torch.Tensor | None   # (m,) grid position of each input row; None: the whole grid, in order
    flat: torch.Tensor            # (N,) the input row of each position
    slots: torch.Tensor           # (R * Q,) the input row of each query slot
    used: torch.Tensor            # (N,) the slot of each position
    cos_q: torch.Tensor           # (R, 1, Q, hd) rotary cos at the slots
    sin_q: torch.Tensor           # (R, 1, Q, hd) rotary sin there, its first half negated (see _rotary)
    cos_k: torch.Tensor           # (m, 1, hd) rotary cos at every input row
    sin_k: torch.Tensor           # (m, 1, hd) rotary sin there, its first half negated
    allowed: torch.Tensor         # (R, 1, Q, W) bool: the keys each slot attends to (causal, no padding)

    @classmethod
    def of(cls, call: tuple, pad_mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
           packed: bool) -> TopPositions:
        """From the top layer's recorded `call`, the (R, W) padding mask of its input grid and the
        N positions (rows, cols), sorted by row; `packed`: the input is the grid's tokens that some
        position attends to (the real tokens of each row up to its last position), in order."""
        R, W = pad_mask.shape
        device = cols.device
        cos, sin = (t[:R, :W].expand(R, W, -1) for t in call[1]["position_embeddings"])  # (R, W, hd)
        counts = torch.bincount(rows, minlength=R)                          # (R,) positions per row
        Q = int(counts.max())
        starts = counts.cumsum(0) - counts                                  # (R,) first position of each row
        slot = torch.arange(len(rows), device=device) - starts[rows]        # (N,) slot within its row
        first = torch.where(counts > 0, cols[starts.clamp_max(len(cols) - 1)], 0)  # (R,) a row's spare slots
        slot_cols = first[:, None].repeat(1, Q)                             # (R, Q)
        slot_cols[rows, slot] = cols
        slot_rows = torch.arange(R, device=device)[:, None].expand(R, Q)
        # the keys some position attends to: causal, no padding
        keys = (torch.arange(W, device=device) <= slot_cols.amax(1)[:, None]) & pad_mask.bool()  # (R, W)
        allowed = (torch.arange(W, device=device) <= slot_cols[..., None]) & keys[:, None]       # (R, Q, W)
        grid_of = keys.reshape(-1) if packed else torch.ones(R * W, dtype=torch.bool, device=device)
        row_of = grid_of.long().cumsum(0) - 1                               # (R * W,) input row of each position
        inside = grid_of.nonzero().squeeze(1) if packed else None
        return cls((R, W), inside, row_of[rows * W + cols], row_of[(slot_rows * W + slot_cols).reshape(-1)],
                   rows * Q + slot, cos[slot_rows, slot_cols][:, None], _signed(sin[slot_rows, slot_cols][:, None]),
                   cos.reshape(R * W, 1, -1)[grid_of], _signed(sin.reshape(R * W, 1, -1)[grid_of]), allowed[:, None])


def top_layer_at(layer: nn.Module, hidden: torch.Tensor, at: TopPositions) -> torch.Tensor:
    """A Llama-family decoder layer's output (N, d) at the N positions of `at` only.

    hidden (m, d) is the layer's input at the rows of `at`; keys and values are computed at every
    row (the queries attend to them), queries, attention output and MLP only at the positions.
    """
    attn = layer.self_attn
    (R, W), (m, d) = at.grid, hidden.shape
    Q, hd = at.allowed.shape[2], attn.head_dim
    x = layer.input_layernorm(hidden)                                      # (m, d)
    k = attn.k_proj(x).view(m, -1, hd)                                     # (m, Hkv, hd)
    v = attn.v_proj(x)                                                     # (m, Hkv * hd)
    q = attn.q_proj(x.index_select(0, at.slots)).view(R, Q, -1, hd)        # (R, Q, H, hd)
    if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms, before rotary
        q, k = attn.q_norm(q), attn.k_norm(k)
    q = _rotary(q.transpose(1, 2), at.cos_q, at.sin_q)                     # (R, H, Q, hd)
    k = _rotary(k, at.cos_k, at.sin_k).view(m, -1)                         # (m, Hkv * hd)
    if at.inside is not None:  # onto the grid, zero where nothing attends
        k, v = (t.new_zeros(R * W, t.shape[-1]).index_copy_(0, at.inside, t) for t in (k, v))
    k, v = (t.view(R, W, -1, hd).transpose(1, 2) for t in (k, v))         # (R, Hkv, W, hd)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=at.allowed, scale=attn.scaling)  # (R, H, Q, hd)
    out = out.transpose(1, 2).reshape(R * Q, -1).index_select(0, at.used)  # (N, H * hd)
    mid = hidden.index_select(0, at.flat) + attn.o_proj(out)               # (N, d)
    return mid + layer.mlp(layer.post_attention_layernorm(mid))
