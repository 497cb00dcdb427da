"""Merging side-memory deltas (each a (out, in) tensor of W_side - W_main): TIES, linear, DARE.

Pure functions on tensors; nothing here knows about models.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top `density` fraction of the nonzero entries by magnitude, zero the rest.

    Only nonzero entries count: a shard trains a random fraction of the matrix, and trimming must
    not be decided by the untouched zeros. Exactly that many are kept, ties broken by position: many
    entries sit at the same magnitude (the clamp at +- norm_constraint), and a cut by value would keep
    none of them when they fill the top fraction.
    """
    flat = delta.flatten()
    positions = flat.nonzero().squeeze(1)                                    # (n,)
    n = positions.numel()
    k = int(round(density * n))
    if k >= n:
        return delta
    order = flat[positions].abs().sort(descending=True, stable=True).indices  # (n,) largest first
    kept = torch.zeros_like(flat)
    kept[positions[order[:k]]] = flat[positions[order[:k]]]
    return kept.view_as(delta)


def ties(deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float = 0.53) -> torch.Tensor:
    """TIES merging (Yadav et al. 2023): trim, elect sign, disjoint mean.

    Each delta keeps its top-`density` entries; per entry the sign of sum(weight * delta) is elected;
    the result is the weighted mean of the trimmed deltas that are nonzero and agree with that sign:
    sum(w_i d_i) / sum(w_i) over those i. With that normalisation an entry trained by one shard only
    (most entries: masks overlap at about rho^2) keeps that shard's value whatever the weights.
    """
    stacked = torch.stack([_trim(d.float(), density) for d in deltas])        # (k, out, in)
    w = torch.tensor(list(weights), dtype=stacked.dtype, device=stacked.device).view(-1, 1, 1)
    sign = torch.sign((w * stacked).sum(0))                                     # (out, in)
    agree = (torch.sign(stacked) == sign) & (stacked != 0)                      # (k, out, in)
    num = (w * stacked * agree).sum(0)
    den = (w * agree).sum(0)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def linear(deltas: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Weighted sum of the deltas (weights as given: equal weights 1/k average them)."""
    return sum(w * d.float() for w, d in zip(weights, deltas))


def dare(deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float = 0.53,
         seed: int = 0) -> torch.Tensor:
    """DARE (Yu et al. 2024): drop each entry with probability 1-density, rescale by 1/density, then
    the weighted sum. The drop masks come from `seed`, so a merge is reproducible."""
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(deltas[0], dtype=torch.float32)
    for w, d in zip(weights, deltas):
        keep = (torch.rand(d.shape, generator=gen) < density).to(d.device)
        out += w * d.float() * keep / density
    return out


def merge(algorithm: str, deltas: Sequence[torch.Tensor], weights: Sequence[float],
          density: float = 0.53, seed: int = 0) -> torch.Tensor:
    """Merge `deltas` with `algorithm` ("ties", "linear" or "dare")."""
    if algorithm == "ties":
        return ties(deltas, weights, density)
    if algorithm == "linear":
        return linear(deltas, weights)
    if algorithm == "dare":
        return dare(deltas, weights, density, seed)
    raise ValueError(f"unknown merge algorithm {algorithm!r}; choose ties, linear or dare")
