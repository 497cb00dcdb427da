"""The fast path of a WISE edit: per step, only what the side memory can change is computed.

During an edit only the side memory's delta changes; everything else is frozen and sees the same
tokens at every step. One no-grad forward per edit (:func:`record_upper`) keeps:

- ``h``: the edited module's input (B, T, in): constant, so the side memory's extra output
  ``dx = h @ delta^T`` is one matmul per step, shared by the edit loss and the routing loss;
- the edited layer's output with the side memory off (B, T, d): when the edited module writes
  straight into the residual stream (FFN down projection, attention output), the layer's output with
  the side memory on is that plus ``dx`` (the *shortcut*), so the edited layer itself is not run
  again;
- the arguments each layer above received (attention mask, rotary embeddings, ...), so the layers
  above are called directly, without the model-level forward (mask building, rotary tables);
- for Llama-family layers, the top layer runs its queries, attention output and MLP only at the
  positions whose logits the loss reads (keys and values at every position): the head and the top
  layer's MLP cost a few positions, not the whole batch.

Every shortcut is checked once per method (at its first edit) against the model's own forward with
a random delta (:meth:`UpperStack.verified`); a configuration that disagrees beyond float tolerance is not used,
and the trainer falls back to running the layers above in full, then to the activation replay of
:mod:`wiseedit.wise.activation_cache`. The result agrees with the full forward to float tolerance
(not bit for bit: the additions are ordered differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
# what calling a layer outside its model's forward raises where a shortcut does not fit that model
_NOT_APPLICABLE = (RuntimeError, TypeError, KeyError, IndexError, AttributeError, ValueError)


def _hidden(out):
    """A decoder layer's hidden-state output, whether it returns a tensor or a tuple."""
    return out[0] if isinstance(out, tuple) else out


@dataclass
class UpperInputs:
    """What one no-grad forward of an edit's batch recorded (shapes for B rows of T tokens)."""

    h: torch.Tensor              # (B, T, in) the edited module's input
    layer_input: tuple           # (args, kwargs) of the edited layer's call
    base_out: torch.Tensor       # (B, T, d) the edited layer's output, side memory off
    calls: list[tuple]           # (args, kwargs) of each layer above, bottom to top
    final_norm: nn.Module | None  # the base model's last norm, found by name (None: not found)


def record_upper(model, layers: nn.ModuleList, index: int, side, batch) -> UpperInputs:
    """Run `batch` once through `model` with the side memory off and record :class:`UpperInputs`."""
    seen: dict = {}
    hooks = [side.register_forward_pre_hook(lambda mod, args: seen.__setitem__("h", args[0])),
             layers[index].register_forward_hook(lambda mod, args, out: seen.__setitem__("out", _hidden(out)))]
    for i in range(index, len(layers)):
        hooks.append(layers[i].register_forward_pre_hook(
            lambda mod, args, kwargs, i=i: seen.__setitem__(i, (args, kwargs)), with_kwargs=True))
    base = model.base_model
    saved, side.memories = side.memories, []  # the main memory alone
    try:
        with torch.no_grad():
            base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    finally:
        side.memories = saved
        for hook in hooks:
            hook.remove()
    norm = next((getattr(base, n) for n in _FINAL_NORMS if isinstance(getattr(base, n, None), nn.Module)), None)
    return UpperInputs(seen["h"], seen[index], seen["out"], [seen[i] for i in range(index + 1, len(layers))], norm)


def _call(layer: nn.Module, call: tuple, hidden: torch.Tensor) -> torch.Tensor:
    """`layer` on `hidden`, with the other arguments of its recorded call."""
    args, kwargs = call
    if args:
        return _hidden(layer(hidden, *args[1:], **kwargs))
    return _hidden(layer(**{**kwargs, "hidden_states": hidden}))


def _llama_like(layer: nn.Module, call: tuple) -> bool:
    attn = getattr(layer, "self_attn", None)
    return (attn is not None and "position_embeddings" in call[1]
            and all(hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp"))
            and all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def top_layer_at(layer: nn.Module, hidden: torch.Tensor, call: tuple, pad_mask: torch.Tensor,
                 rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """A Llama-family decoder layer's output (N, d) at the N positions (rows, cols) only.

    hidden (B, T, d) is the layer's input; keys and values are computed at every position (the
    queries attend to them), queries, attention output and MLP only at the N positions.
    """
    attn = layer.self_attn
    B, T, _ = hidden.shape
    hd = attn.head_dim
    x = layer.input_layernorm(hidden)                                      # (B, T, d)
    k = attn.k_proj(x).view(B, T, -1, hd)                                  # (B, T, Hkv, hd)
    v = attn.v_proj(x).view(B, T, -1, hd).transpose(1, 2)                  # (B, Hkv, T, hd)
    q = attn.q_proj(x[rows, cols]).view(len(rows), -1, hd)                 # (N, H, hd)
    if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms, before rotary
        q, k = attn.q_norm(q), attn.k_norm(k)
    k = k.transpose(1, 2)                                                  # (B, Hkv, T, hd)
    cos, sin = (t[:, :T] for t in call[1]["position_embeddings"])          # (1 or B, T, hd)
    at = rows if cos.shape[0] > 1 else torch.zeros_like(rows)
    q = q * cos[at, cols][:, None] + _rotate_half(q) * sin[at, cols][:, None]
    k = k * cos[:, None] + _rotate_half(k) * sin[:, None]
    groups = q.shape[1] // k.shape[1]
    k, v = k[rows], v[rows]                                                # (N, Hkv, T, hd)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    allowed = (torch.arange(T, device=cols.device) <= cols[:, None]) & pad_mask[rows].bool()  # (N, T) causal
    out = F.scaled_dot_product_attention(q[:, :, None], k, v, attn_mask=allowed[:, None, None],
                                         scale=attn.scaling)               # (N, H, 1, hd)
    mid = hidden[rows, cols] + attn.o_proj(out.reshape(len(rows), -1))     # (N, d)
    return mid + layer.mlp(layer.post_attention_layernorm(mid))


class UpperStack:
    """Computes the final hidden states (N, d) before the N target tokens of a batch, from ``dx``."""

    def __init__(self, rec: UpperInputs, layers: nn.ModuleList, index: int, side, batch,
                 rows: torch.Tensor, cols: torch.Tensor, shortcut: bool, top_subset: bool):
        self.rec, self.layers, self.index, self.side = rec, layers, index, side
        self.rows, self.cols = rows, cols            # (N,) the positions before the targets
        self.pad_mask = batch.attention_mask
        self.shortcut = shortcut
        # the top layer at the N positions only, if it is not the edited layer itself
        self.top_subset = top_subset and bool(rec.calls) and _llama_like(layers[-1], rec.calls[-1])
        # rows and tokens the top layer needs: edit rows come first, targets end their rows
        self.width = (int(rows.max()) + 1, int(cols.max()) + 1)
        # padding is about a quarter of a batch of templates: the side memory skips it (it reaches
        # no loss: masked out of attention and of the routing score)
        tokens = batch.attention_mask.to(rec.h.device).bool()         # (B, T)
        self.token_index = tokens.reshape(-1).nonzero().squeeze(1)    # (M,) flat positions of real tokens
        self.h_tokens = rec.h[tokens]                                  # (M, in)

    def extra_out(self, delta: torch.Tensor) -> torch.Tensor:
        """The side memory's extra output dx (B, T, out) float32, zero at padding."""
        packed = self.side.delta_out(self.h_tokens, delta)             # (M, out)
        B, T = self.rec.h.shape[:2]
        return packed.new_zeros((B * T, packed.shape[-1])).index_copy(0, self.token_index, packed).view(B, T, -1)

    def final_hidden(self, delta: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """(N, d) after the final norm; dx = :meth:`extra_out` of `delta` (B, T, out)."""
        rec = self.rec
        if self.shortcut:
            hidden = rec.base_out + dx.to(rec.base_out.dtype)             # (B, T, d)
        else:
            with self.side.training_delta(delta):
                hidden = _call(self.layers[self.index], rec.layer_input, rec.layer_input[0][0]
                               if rec.layer_input[0] else rec.layer_input[1]["hidden_states"])
        above = list(zip(self.layers[self.index + 1:], rec.calls))
        if self.top_subset:
            for layer, call in above[:-1]:
                hidden = _call(layer, call, hidden)
            rows_, width = self.width
            top = top_layer_at(above[-1][0], hidden[:rows_, :width], above[-1][1],
                               self.pad_mask[:rows_, :width], self.rows, self.cols)  # (N, d)
        else:
            for layer, call in above:
                hidden = _call(layer, call, hidden)
            top = hidden[self.rows, self.cols]
        return rec.final_norm(top)

    @classmethod
    def verified(cls, model, layers, index: int, side, batch, rows, cols, main_weight: torch.Tensor,
                 known: tuple[bool, bool] | None | str = "unknown"):
        """``(stack, configuration)``: the fastest configuration ``(shortcut, top_subset)`` whose final
        hidden states agree with the model's own forward under a random delta, and the stack built with
        it; ``(None, None)`` when none does (then the trainer uses the activation replay).

        `known`: the configuration an earlier batch of the same model and layer verified (None: none
        did). Which shortcuts hold is a property of the architecture, not of the batch, so the check
        (a full forward and up to two fast ones) runs once per method, not once per edit."""
        if known is None:
            return None, None
        try:
            rec = record_upper(model, layers, index, side, batch)
        except _NOT_APPLICABLE:
            return None, None
        if rec.final_norm is None:
            return None, None
        if known != "unknown":
            return cls(rec, layers, index, side, batch, rows, cols, *known), known
        gen = torch.Generator(device="cpu").manual_seed(0)
        probe = (torch.randn(main_weight.shape, generator=gen) * main_weight.float().std().item())
        # a Parameter, as the trainer's delta: the side layer registers what it is given as one
        probe = nn.Parameter(probe.to(main_weight.device), requires_grad=False)
        with torch.no_grad():
            with side.training_delta(probe):
                full = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                        use_cache=False).last_hidden_state[rows, cols].float()  # (N, d)
            if not bool(torch.isfinite(full).all()):
                return None, None
            # rounding only: 1e-4 of the largest entry in float32, 8 ulps in half precision
            tol = max(1e-4, 8 * torch.finfo(rec.base_out.dtype).eps) * full.abs().max().item()
            for shortcut, top_subset in ((True, True), (False, False)):
                try:
                    stack = cls(rec, layers, index, side, batch, rows, cols, shortcut, top_subset)
                    dx = stack.extra_out(probe)
                    if shortcut and dx.shape != rec.base_out.shape:  # e.g. an up projection: no shortcut
                        continue
                    fast = stack.final_hidden(probe, dx).float()
                except _NOT_APPLICABLE:  # a layer that cannot be called this way: the next configuration
                    continue
                if fast.shape == full.shape and (fast - full).abs().max().item() <= tol:
                    return stack, (shortcut, top_subset)
        return None, None
