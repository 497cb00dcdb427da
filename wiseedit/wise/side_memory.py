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

Routers (``router`` of :class:`~wiseedit.wise.config.WiseConfig`), each deciding per position t from
the layer's input there:

- ``"norm"``, the paper's: memory m fires at t when its score reaches its threshold (act_ratio x the
  lowest score of its edits); with pooling "last" the score is d_t, with "mean" the running mean of d
  over the row's routable positions up to t (running max beyond 100 of them);
- ``"key"``: each memory keeps one key per edit, the centred module input at the edit prompt's last
  token, unit length; memory m fires at t when the cosine of the centred input at t with one of its
  keys reaches ``key_threshold``. A per-edit matched filter, so a neighbour is judged against each
  edit alone, not against the sum of every edit a memory holds (docs/wise.md measures why that
  matters).

Where several fire, the one with the highest score wins; the decision is then latched causally for the
rest of the row (:mod:`wiseedit.wise.routing`). A row that no memory claims gets exactly the main
memory's output, so unrelated inputs are bit-identical to the base model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wiseedit.models.modules import is_conv1d
from wiseedit.wise.memory import Memory
from wiseedit.wise.routing import CallInfo, latch

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

    def __init__(self, base: nn.Module, router: str = "norm", key_threshold: float = 1.0):
        super().__init__()
        self.base = base
        self.memories: list[Memory] = []
        self.center: torch.Tensor | None = None  # (in,) mean input on neutral text; None: not centred
        self.pooling = "mean"
        self.router = router
        self.key_threshold = key_threshold
        self.call = CallInfo()              # set before each model call by routing.install_call_hook
        self._carry: dict[str, torch.Tensor] = {}  # per-row state at the end of the last call (see _route)
        self._train_delta: torch.Tensor | None = None

    @property
    def main_weight(self) -> torch.Tensor:
        """The main memory as (out, in), a view of the base module's weight."""
        w = self.base.weight
        return w.t() if is_conv1d(self.base) else w

    def delta_out(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """(W_side - W_main) x for inputs x (..., in), computed in float32 -> (..., out) float32."""
        return x.to(delta.dtype) @ delta.t()

    def scores(self, delta_out: torch.Tensor, delta: torch.Tensor, token_mask: torch.Tensor | None,
               center_out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row routing scores (B,) from ``delta_out = delta_out(x, delta)`` (B, T, out).
        `center_out`: ``delta_out(center, delta)`` (out,) where the caller computed it already."""
        return routing_scores(self._centred(delta_out, delta, center_out), token_mask, self.pooling)

    def distances(self, delta_out: torch.Tensor, delta: torch.Tensor,
                  center_out: torch.Tensor | None = None) -> torch.Tensor:
        """The per-position distance d_t of the module docstring (...,) from ``delta_out`` (..., out):
        what :meth:`scores` pools, for callers that need it at a few positions only."""
        return self._centred(delta_out, delta, center_out).float().norm(dim=-1)

    def _centred(self, delta_out: torch.Tensor, delta: torch.Tensor, center_out: torch.Tensor | None):
        if self.center is None:
            return delta_out
        return delta_out - (self.delta_out(self.center, delta) if center_out is None else center_out)

    def key_of(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length centred inputs (..., in) float32: what the key router compares."""
        x = x.float()
        if self.center is not None:
            x = x - self.center
        return torch.nn.functional.normalize(x, dim=-1)

    @property
    def last_choice(self) -> torch.Tensor | None:
        """(B,) the memory each row of the last call used at its last position (-1: main); None
        before any routed call."""
        return self._carry.get("latch")

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
        if self.router == "key":  # keys decide alone: only the chosen memory's output is computed
            chosen = self._route(x, None)                                   # (B, T) memory index or -1
            if bool((chosen < 0).all()):
                return out
            edited = out.clone()
            for index in chosen.unique().tolist():
                if index >= 0:
                    at = chosen == index                                    # (B, T)
                    edited[at] = out[at] + self.delta_out(x[at], self.memories[index].delta).to(out.dtype)
            return edited
        extra = torch.stack([self.delta_out(x, m.delta) for m in self.memories])  # (M, B, T, out)
        chosen = self._route(x, extra)                                      # (B, T) memory index or -1
        if bool((chosen < 0).all()):
            return out
        picked = extra.gather(0, chosen.clamp_min(0)[None, :, :, None].expand(1, *extra.shape[1:])).squeeze(0)
        return torch.where((chosen >= 0)[..., None], out + picked.to(out.dtype), out)

    def _route(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The memory each position uses (B, T), -1 for the main memory (module docstring); `extra`
        (M, B, T, out), every memory's output, is read by the norm router only."""
        B, T = x.shape[:2]
        routable = self.call.routable
        if routable is None or tuple(routable.shape) != (B, T):
            routable = torch.ones(B, T, dtype=torch.bool, device=x.device)  # called outside a hooked forward
        routable = routable.to(x.device)
        carry = self._carry if self.call.continues and self._carry.get("latch", torch.empty(0)).shape[:1] == (B,) \
            else {}
        if self.router == "key":
            key = self.key_of(x)                                           # (B, T, in)
            score = torch.stack([(key @ m.keys.t().to(x.device)).amax(-1) if m.keys is not None
                                 else torch.full((B, T), -2.0, device=x.device) for m in self.memories], -1)
            threshold = torch.full((len(self.memories),), self.key_threshold, device=x.device)
        else:
            score, carry_sums = self._norm_scores(extra, routable, carry)
        score = score.masked_fill(~routable[..., None], float("-inf"))    # (B, T, M)
        if self.router != "key":
            threshold = torch.tensor([m.threshold for m in self.memories], device=x.device)
        passing = score >= threshold
        fires = passing.any(-1)                                            # (B, T)
        choice = score.masked_fill(~passing, float("-inf")).argmax(-1)     # (B, T)
        start = carry.get("latch", torch.full((B,), -1, dtype=torch.long, device=x.device))
        chosen = latch(fires, choice, start.to(x.device))
        self._carry = {"latch": chosen[:, -1]}
        if self.router != "key":
            self._carry.update(carry_sums)
        return chosen

    def _norm_scores(self, extra: torch.Tensor, routable: torch.Tensor, carry: dict):
        """The paper's scores at every position (B, T, M), running over the row for pooling "mean",
        and the running sums to carry to the next call of a generation."""
        if self.center is not None:
            extra = extra - torch.stack([self.delta_out(self.center, m.delta) for m in self.memories])[:, None, None]
        dist = extra.norm(dim=-1).permute(1, 2, 0)                         # (B, T, M)
        if self.pooling == "last":
            return dist, {}
        M = dist.shape[-1]
        B = dist.shape[0]
        zeros = dist.new_zeros(B, M)
        weight = routable[..., None].to(dist.dtype)
        sums = carry.get("sum", zeros)[:, None] + (dist * weight).cumsum(1)                # (B, T, M)
        counts = carry.get("count", zeros[:, :1])[:, None] + weight.cumsum(1)               # (B, T, 1)
        peaks = torch.maximum(carry.get("peak", zeros - float("inf"))[:, None],
                              dist.masked_fill(weight == 0, float("-inf")).cummax(1).values)
        score = torch.where(counts > LONG_SEQUENCE, peaks, sums / counts.clamp_min(1))
        return score, {"sum": sums[:, -1], "count": counts[:, -1], "peak": peaks[:, -1]}
