"""The edited module wrapped with WISE's side memories and router.

Routing score (our choice among the two forms wise.md allows): for a row with routing tokens t,

    d_t   = || (W_side - W_main) (h_t - mu) ||_2
    score = d_t at the last routing token                  (pooling "last", the auto preset's default)
          | mean_t d_t (max over t beyond 100 tokens)      (pooling "mean", the reference's)

i.e. the paper's ``|| A(x) (W' - W) ||`` per token, without the reference code's activation function
applied to the module output, on inputs centred on `mu`, the module's mean input over neutral text
(measured once per model). It is linear in the delta, needs no knowledge of the architecture's
activation, and costs one matmul that is reused for the output of the chosen memory. Centring
matters: FFN inputs share a large common component (about 70% of their norm after GPT-2's GELU), and
a side memory that reacts to it reacts to every input; what every input shares says nothing about
which input was edited.

Decisions are per row of the batch, from the prompt only (padding and, inside
``EditingMethod.query_tokens``, answer tokens masked out), made at prefill and kept for the tokens
``generate`` adds with a KV cache: see :mod:`wiseedit.wise.routing`. A row that no memory claims gets
exactly the main memory's output, so unrelated inputs are bit-identical to the base model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wiseedit.models.modules import is_conv1d
from wiseedit.wise.memory import Memory
from wiseedit.wise.routing import RoutingState

LONG_SEQUENCE = 100  # routing tokens beyond which the max, not the mean, of the distances is the score


def routing_scores(delta_out: torch.Tensor, token_mask: torch.Tensor | None, pooling: str = "mean") -> torch.Tensor:
    """Per-row score from the side memory's extra output `delta_out` (B, T, out) -> (B,)."""
    dist = delta_out.float().norm(dim=-1)                                   # (B, T)
    if token_mask is None:
        token_mask = torch.ones_like(dist, dtype=torch.bool)
    mask = token_mask.to(dist.device, torch.bool)
    count = mask.sum(1)                                                     # (B,)
    if pooling == "last":
        positions = torch.arange(dist.shape[1], device=dist.device).expand_as(dist)
        last = positions.masked_fill(~mask, -1).amax(1).clamp_min(0)        # (B,)
        return dist.gather(1, last[:, None]).squeeze(1) * (count > 0)
    mean = (dist * mask).sum(1) / count.clamp_min(1)
    peak = dist.masked_fill(~mask, float("-inf")).amax(1)
    return torch.where(count > LONG_SEQUENCE, peak, mean)


class SideMemoryLayer(nn.Module):
    """Wraps the edited module (``nn.Linear`` or ``Conv1D``; bias kept) with side memories."""

    def __init__(self, base: nn.Module, routing: RoutingState):
        super().__init__()
        self.base = base
        self.routing = routing
        self.memories: list[Memory] = []
        self.center: torch.Tensor | None = None  # (in,) mean input on neutral text; None: not centred
        self.pooling = "mean"
        self._train_delta: torch.Tensor | None = None

    @property
    def main_weight(self) -> torch.Tensor:
        """The main memory as (out, in), a view of the base module's weight."""
        w = self.base.weight
        return w.t() if is_conv1d(self.base) else w

    def delta_out(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """(W_side - W_main) x for inputs x (..., in), computed in float32 -> (..., out) float32."""
        return x.to(delta.dtype) @ delta.t()

    def scores(self, delta_out: torch.Tensor, delta: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-row routing scores (B,) from ``delta_out = delta_out(x, delta)`` (B, T, out)."""
        if self.center is not None:
            delta_out = delta_out - self.delta_out(self.center, delta)
        return routing_scores(delta_out, token_mask, self.pooling)

    @contextmanager
    def training_delta(self, delta: torch.Tensor) -> Iterator[None]:
        """While training a shard: every row goes through the side memory ``W_main + delta``."""
        self._train_delta = delta
        try:
            yield
        finally:
            self._train_delta = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)                                                  # (B, T, out)
        if self._train_delta is not None:
            return out + self.delta_out(x, self._train_delta).to(out.dtype)
        if not self.memories:
            return out
        extra = [self.delta_out(x, m.delta) for m in self.memories]        # M x (B, T, out)
        chosen = self._decide(extra, x.shape[0])                            # (B,) memory index or -1
        if bool((chosen < 0).all()):
            return out
        picked = torch.stack(extra).gather(                                 # (B, T, out)
            0, chosen.clamp_min(0).view(1, -1, 1, 1).expand(1, *extra[0].shape)).squeeze(0)
        routed = (chosen >= 0).view(-1, 1, 1)
        return torch.where(routed, out + picked.to(out.dtype), out)

    def _decide(self, extra: list[torch.Tensor], batch: int) -> torch.Tensor:
        state = self.routing
        if state.decoding and state.chosen is not None and state.chosen.shape[0] == batch:
            return state.chosen  # keep the prefill's decision for generated tokens
        mask = state.token_mask
        if mask is not None and tuple(mask.shape) != tuple(extra[0].shape[:2]):
            mask = None  # called outside a routed model forward: look at every token
        scores = torch.stack([self.scores(e, m.delta, mask) for e, m in zip(extra, self.memories)], 1)  # (B, M)
        thresholds = torch.tensor([m.threshold for m in self.memories], device=scores.device)
        passing = scores >= thresholds
        best = scores.masked_fill(~passing, float("-inf")).argmax(1)
        chosen = torch.where(passing.any(1), best, torch.full_like(best, -1))
        state.chosen = chosen
        return chosen
