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
    position, are read by nothing). Attention runs over these rows as one sequence, each position
    allowed the earlier tokens of its own grid row."""

    inside: torch.Tensor | None   # (m,) grid position of each input row; None: the whole grid, in order
    flat: torch.Tensor            # (N,) the input row of each position
    cos_q: torch.Tensor           # (N, 1, hd) rotary cos at the positions
    sin_q: torch.Tensor           # (N, 1, hd) rotary sin there, its first half negated (see _rotary)
    cos_k: torch.Tensor           # (m, 1, hd) rotary cos at every input row
    sin_k: torch.Tensor           # (m, 1, hd) rotary sin there, its first half negated
    allowed: torch.Tensor         # (1, 1, N, m) bool: the input rows each position attends to

    @classmethod
    def of(cls, call: tuple, pad_mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
           packed: bool) -> TopPositions:
        """From the top layer's recorded `call`, the (R, W) padding mask of its input grid and the
        N positions (rows, cols); `packed`: the input is the grid's tokens that some position
        attends to (the real tokens of each row up to its last position), in order."""
        R, W = pad_mask.shape
        device = cols.device
        cos, sin = (t[:R, :W].expand(R, W, -1).reshape(R * W, 1, -1) for t in call[1]["position_embeddings"])
        last = torch.full((R,), -1, dtype=cols.dtype, device=device).scatter_reduce(0, rows, cols, "amax")
        col = torch.arange(W, device=device)
        keys = ((col <= last[:, None]) & pad_mask.bool()).reshape(-1)       # (R * W,) tokens some position reads
        grid_of = keys if packed else torch.ones(R * W, dtype=torch.bool, device=device)
        grid_row, grid_col = (torch.arange(R, device=device)[:, None].expand(R, W).reshape(-1)[grid_of],
                              col.repeat(R)[grid_of])                       # (m,) of each input row
        allowed = (grid_row == rows[:, None]) & (grid_col <= cols[:, None]) & keys[grid_of]  # (N, m) causal, own row
        flat = rows * W + cols
        return cls(grid_of.nonzero().squeeze(1) if packed else None, (grid_of.long().cumsum(0) - 1)[flat],
                   cos[flat], _signed(sin[flat]), cos[grid_of], _signed(sin[grid_of]), allowed[None, None])


def top_layer_at(layer: nn.Module, hidden: torch.Tensor, at: TopPositions) -> torch.Tensor:
    """A Llama-family decoder layer's output (N, d) at the N positions of `at` only.

    hidden (m, d) is the layer's input at the rows of `at`; keys and values are computed at every
    row (the queries attend to them), queries, attention output and MLP only at the positions.
    """
    attn = layer.self_attn
    N, hd = at.flat.shape[0], attn.head_dim
    x = layer.input_layernorm(hidden)                                      # (m, d)
    q = attn.q_proj(x.index_select(0, at.flat)).view(N, -1, hd)            # (N, H, hd)
    k = attn.k_proj(x).view(len(x), -1, hd)                                # (m, Hkv, hd)
    v = attn.v_proj(x).view(len(x), -1, hd)                                # (m, Hkv, hd)
    if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms, before rotary
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = _rotary(q, at.cos_q, at.sin_q), _rotary(k, at.cos_k, at.sin_k)
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))                # (1, heads, N or m, hd)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=at.allowed, scale=attn.scaling)  # (1, H, N, hd)
    mid = hidden.index_select(0, at.flat) + attn.o_proj(out[0].transpose(0, 1).reshape(N, -1))  # (N, d)
    return mid + layer.mlp(layer.post_attention_layernorm(mid))
