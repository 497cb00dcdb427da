"""The fast path of a WISE edit: per step, only what the side memory can change is computed.

During an edit only the side memory's delta changes; everything else is frozen and sees the same
tokens at every step. One no-grad forward per edit (:func:`record_upper`, ended at the top layer's
call) keeps:

- ``h``: the edited module's input (B, T, in): constant, so the side memory's extra output
  ``dx = h @ delta^T`` is one matmul per step, shared by the edit loss and the routing loss, on the
  tokens something reads (no padding);
- the edited layer's output with the side memory off (B, T, d): when the edited module writes
  straight into the residual stream (FFN down projection), the layer's output with the side memory
  on is that plus ``dx`` (the *shortcut*), so the edited layer itself is not run again;
- the arguments each layer above received (attention mask, rotary embeddings, ...), so the layers
  above are called directly, without the model-level forward (mask building, rotary tables);
- for Llama-family layers, the top layer runs its queries, attention output and MLP only at the
  positions whose logits the loss reads, and its keys and values at the real tokens of the rows
  those read (:mod:`wiseedit.wise.top_layer`): the head and the top layer's MLP cost a few
  positions, not the whole batch;
- with pooling "last" the routing score reads one position per row, so ``dx`` is computed there and
  at the top layer's tokens alone.

Every shortcut is checked once per method (at its first edit) against the model's own forward with
a random delta (:meth:`UpperStack.verified`); a configuration that disagrees beyond float tolerance is not used,
and the trainer falls back to running the layers above in full, then to the activation replay of
:mod:`wiseedit.wise.activation_cache`. The result agrees with the full forward to float tolerance
(not bit for bit: the additions are ordered differently).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wiseedit.wise.partial_forward import run_until
from wiseedit.wise.top_layer import TopPositions, llama_like, top_layer_at

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
        with torch.no_grad():  # nothing past the top layer's arguments is needed: it ends there
            run_until(lambda: base(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False),
                      layers[-1], after=index == len(layers) - 1)
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


class UpperStack:
    """Computes the final hidden states (N, d) before the N target tokens of a batch, and the
    routing scores of its rows, from ``dx``.

    ``dx`` (:meth:`extra_out`) has one row per token whose extra output something reads, in the
    batch's row-major order: every real token (padding, about a quarter of a batch of templates, is
    masked out of attention and of the routing score), or, when the top layer sits right above the
    edited one and the score pools the last routing token, the real tokens of the rows the top layer
    reads and each row's last routing token.
    """

    def __init__(self, rec: UpperInputs, layers: nn.ModuleList, index: int, side, batch,
                 rows: torch.Tensor, cols: torch.Tensor, shortcut: bool, top_subset: bool):
        self.rec, self.layers, self.index, self.side = rec, layers, index, side
        self.rows, self.cols = rows, cols            # (N,) the positions before the targets
        self.shortcut = shortcut
        # the top layer at the N positions only, if it is not the edited layer itself
        self.top_subset = top_subset and bool(rec.calls) and llama_like(layers[-1], rec.calls[-1])
        device = rec.h.device
        tokens = batch.attention_mask.to(device).bool()               # (B, T)
        self.token_index = tokens.reshape(-1).nonzero().squeeze(1)    # (M,) flat positions of real tokens
        self.h_tokens = rec.h[tokens].float()                          # (M, in) in the delta's dtype
        self.routing = batch.prompt_mask.to(device).bool()             # (B, T) the router's tokens
        # pooling "last" reads one position per row: each row's last routing token, as a row of dx
        positions = torch.arange(tokens.shape[1], device=device).expand_as(tokens)
        last = positions.masked_fill(~self.routing, -1).amax(1).clamp_min(0)            # (B,)
        packed_at = tokens.reshape(-1).long().cumsum(0).view_as(tokens) - 1             # (B, T) row of dx
        self.last_index = packed_at[torch.arange(len(last), device=device), last]       # (B,)
        self.has_routing = self.routing.any(1).float()                                  # (B,)
        # the top layer reads the first R rows (edit rows come first) up to the last target's input
        self.region = None
        if self.top_subset:
            R, W = self.top_grid = (int(rows.max()) + 1, int(cols.max()) + 1)
            packed = shortcut and len(rec.calls) == 1  # the top layer sits right above the edited one
            self.top_at = TopPositions.of(rec.calls[-1], batch.attention_mask[:R, :W].to(device), rows, cols, packed)
            if packed:  # its input at the grid's tokens some position attends to: recorded, plus dx there
                inside = self.top_at.inside                                             # (m,) grid positions
                self.region = (packed_at[:R, :W].reshape(-1)[inside],                   # rows of dx, base there
                               rec.base_out[:R, :W].reshape(R * W, -1)[inside])
                if side.pooling == "last":  # dx is read nowhere else: the side memory skips the rest
                    self._keep(torch.cat([self.region[0], self.last_index]).unique())

    def _keep(self, rows: torch.Tensor) -> None:
        """Keep rows `rows` (sorted) of dx alone, renumbering what indexes them."""
        renumber = torch.full((len(self.token_index),), -1, dtype=torch.long, device=rows.device)
        renumber[rows] = torch.arange(len(rows), device=rows.device)
        self.token_index, self.h_tokens = self.token_index[rows], self.h_tokens[rows]
        self.last_index = renumber[self.last_index]
        self.region = (renumber[self.region[0]],) + self.region[1:]

    def extra_out(self, delta: torch.Tensor) -> torch.Tensor:
        """The side memory's extra output dx (M, out) float32 at the M tokens of the class docstring."""
        return self.side.delta_out(self.h_tokens, delta)

    def unpacked(self, dx: torch.Tensor) -> torch.Tensor:
        """`dx` (M, out) laid out as the batch (B, T, out), zero at the other tokens."""
        B, T = self.rec.h.shape[:2]
        return dx.new_zeros((B * T, dx.shape[-1])).index_copy_(0, self.token_index, dx).view(B, T, -1)

    def scores(self, dx: torch.Tensor, delta: torch.Tensor, center_out: torch.Tensor | None = None) -> torch.Tensor:
        """The side memory's routing scores (B,) of the batch's rows from packed `dx` (and the
        delta's output on the centre, when computed with it)."""
        if self.side.pooling == "last":  # one position per row
            return self.side.distances(dx.index_select(0, self.last_index), delta, center_out) * self.has_routing
        return self.side.scores(self.unpacked(dx), delta, self.routing, center_out)

    def final_hidden(self, delta: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """(N, d) after the final norm; dx = :meth:`extra_out` of `delta` (M, out)."""
        rec = self.rec
        if self.region is not None:  # the top layer's input at real tokens: recorded, plus dx
            rows_of_dx, base = self.region
            hidden = base + dx.index_select(0, rows_of_dx).to(base.dtype)               # (m, d)
            return rec.final_norm(top_layer_at(self.layers[-1], hidden, self.top_at))
        if self.shortcut:
            hidden = rec.base_out + self.unpacked(dx).to(rec.base_out.dtype)             # (B, T, d)
        else:
            with self.side.training_delta(delta):
                hidden = _call(self.layers[self.index], rec.layer_input, rec.layer_input[0][0]
                               if rec.layer_input[0] else rec.layer_input[1]["hidden_states"])
        above = list(zip(self.layers[self.index + 1:], rec.calls))
        if self.top_subset:
            for layer, call in above[:-1]:
                hidden = _call(layer, call, hidden)
            R, W = self.top_grid
            top = top_layer_at(above[-1][0], hidden[:R, :W].reshape(R * W, -1), self.top_at)  # (N, d)
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
                    if shortcut and dx.shape[-1] != rec.base_out.shape[-1]:  # e.g. an up projection: no shortcut
                        continue
                    fast = stack.final_hidden(probe, dx).float()
                except _NOT_APPLICABLE:  # a layer that cannot be called this way: the next configuration
                    continue
                if fast.shape == full.shape and (fast - full).abs().max().item() <= tol:
                    return stack, (shortcut, top_subset)
        return None, None
