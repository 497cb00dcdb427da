"""RECIPE's meta-training losses (recipe.md section 3), as pure functions of logits.

The hinge rule shared by the sentinel and edit losses: a row (or token) contributes ``-log p(wanted)``
only while ``p(wanted) < margin x p(best other)``; once the wanted choice wins by that factor it stops
pulling, so the encoder is not driven to ever larger similarities. Means are over all rows (tokens),
satisfied ones counting zero, so a loss shrinks smoothly as more rows are satisfied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def margin_hinge_nll(logits: torch.Tensor, wanted: torch.Tensor, margin: float) -> torch.Tensor:
    """Per row of `logits` (N, C): ``-log p(wanted)`` where ``p(wanted) < margin x max other p``,
    else 0. Returns (N,)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (N, C)
    wanted_logp = logp.gather(1, wanted[:, None]).squeeze(1)  # (N,)
    other = logp.scatter(1, wanted[:, None], float("-inf")).amax(dim=1)  # (N,) best other choice
    active = wanted_logp < other + math.log(margin)
    return torch.where(active, -wanted_logp, torch.zeros_like(wanted_logp))


def retrieval_losses(first: torch.Tensor, second: torch.Tensor, locality: torch.Tensor,
                     keys: torch.Tensor, sentinel: torch.Tensor, margin: float,
                     bank: torch.Tensor | None = None,
                     excluded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                     ) -> dict[str, torch.Tensor]:
    """The three retrieval losses for a batch of B edits; all similarities are ``q . k / sqrt(d_r)``.

    `first` (B, d_r): one query per edit (reliability or paraphrase), which must retrieve its own
    statement among the candidate statements and the `sentinel` key (d_r,) (InfoNCE). `second`
    (B, d_r): the other query of each edit, with its own statement removed, must prefer the sentinel.
    `locality` (B, d_r): unrelated queries, which must prefer the sentinel over every statement.

    The candidate statements are the batch's `keys` (B, d_r), then the `bank` (N, d_r) of other
    statements' keys when given (no gradient; more negatives than a batch holds, as a store will).
    `excluded`: for `first`, `second` and `locality`, a (B, B + N) mask of the statements that are no
    candidates for that row's query (e.g. another edit of the same prompt, which answers it as well).
    """
    B, d_r = keys.shape
    statements = keys if bank is None else torch.cat([keys, bank.to(keys.dtype)], dim=0)  # (S, d_r)
    S = statements.shape[0]
    candidates = torch.cat([statements, sentinel[None]], dim=0)  # (S+1, d_r): statements, then the sentinel
    scale = 1.0 / math.sqrt(d_r)
    none = torch.zeros(B, S, dtype=torch.bool, device=keys.device)
    ex_first, ex_second, ex_loc = excluded if excluded is not None else (none, none, none)

    def similarities(queries: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:  # (B, S+1)
        sims = (queries @ candidates.T * scale).float()
        return sims.masked_fill(torch.cat([hidden, hidden.new_zeros(B, 1)], dim=1), float("-inf"))

    own = torch.arange(B, device=keys.device)
    sentinel_col = torch.full((B,), S, dtype=torch.long, device=keys.device)
    info_nce = F.cross_entropy(similarities(first, ex_first), own)
    without_own = similarities(second, ex_second)
    without_own[own, own] = float("-inf")  # its own statement is not in the store for this query
    return {
        "retrieval": info_nce,
        "sentinel_other": margin_hinge_nll(without_own, sentinel_col, margin).mean(),
        "sentinel_locality": margin_hinge_nll(similarities(locality, ex_loc), sentinel_col, margin).mean(),
    }


def edit_nll(logits: torch.Tensor, input_ids: torch.Tensor, answer_mask: torch.Tensor,
             margin: float) -> torch.Tensor:
    """Hinge NLL of the answer tokens: `logits` (B, T, V) predict `input_ids` (B, T) one step ahead;
    `answer_mask` (B, T) marks the answer tokens. Mean over answer tokens."""
    scored = answer_mask[:, 1:]  # (B, T-1): positions t whose token is an answer token
    picked = logits[:, :-1][scored]  # (N, V) logits at t-1
    gold = input_ids[:, 1:][scored]  # (N,)
    return margin_hinge_nll(picked, gold, margin).mean()


def locality_kl(base_logits: torch.Tensor, prompted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(base || prompted) of the next-token distributions at the positions where `mask` (B, T) is
    true, averaged over those positions; `base_logits` and `prompted` are (B, T, V)."""
    base = F.log_softmax(base_logits[mask].float(), dim=-1)  # (N, V)
    edited = F.log_softmax(prompted[mask].float(), dim=-1)  # (N, V)
    return F.kl_div(edited, base, log_target=True, reduction="batchmean")
