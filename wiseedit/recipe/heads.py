"""The small trained heads on top of the encoder (recipe.md section 2): MLP_K / MLP_Q, MLP_P, sentinel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyHead(nn.Module):
    """MLP_K (knowledge keys) or MLP_Q (query keys): ``x = W1 pool; r = relu(W2 x) + x``."""

    def __init__(self, pooled_size: int, d_r: int):
        super().__init__()
        self.proj = nn.Linear(pooled_size, d_r)
        self.mlp = nn.Linear(d_r, d_r)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.proj(pooled)  # (B, d_r)
        return F.relu(self.mlp(x)) + x  # (B, d_r)

    @torch.no_grad()
    def start_as(self, part: slice) -> None:
        """Start as the identity on `part` of the pooled input (its first d_r dims if wider), with the
        residual branch scaled to 1% so that keys are about that part: retrieval then starts from the
        encoder's own similarity of sentences rather than from a random projection of it.

        The residual branch is scaled, not zeroed: at exactly zero its ReLU would pass no gradient."""
        width = min(part.stop - part.start, self.proj.out_features)
        self.proj.weight.zero_()
        self.proj.bias.zero_()
        self.proj.weight[:width, part.start:part.start + width] = torch.eye(width)
        self.mlp.weight.mul_(0.01)
        self.mlp.bias.zero_()


class PromptHead(nn.Module):
    """MLP_P: a knowledge key to `prompt_tokens` continuous prompt vectors of the LLM's hidden size.

    With `input_size` given, it reads a vector of that width instead (the encoder's pooled output)
    through a projection to d_r first."""

    def __init__(self, d_r: int, prompt_tokens: int, d_llm: int, input_size: int | None = None):
        super().__init__()
        self.prompt_tokens, self.d_llm = prompt_tokens, d_llm
        self.proj = nn.Linear(input_size, d_r) if input_size is not None else None
        self.mlp = nn.Linear(d_r, d_r)
        self.out = nn.Linear(d_r, prompt_tokens * d_llm)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        key = self.proj(source) if self.proj is not None else source  # (B, d_r)
        x = F.relu(self.mlp(key)) + key  # (B, d_r)
        return self.out(x).view(-1, self.prompt_tokens, self.d_llm)  # (B, l, d_llm)


class Sentinel(nn.Module):
    """The Knowledge Sentinel's learned input: `tokens` vectors of the encoder's hidden size.

    They go through the encoder (no token embeddings), the pooling and MLP_K like a statement would;
    the resulting key's similarity to a query is that query's retrieval threshold.
    """

    def __init__(self, tokens: int, hidden_size: int, init_std: float = 0.02):
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(tokens, hidden_size) * init_std)  # (n, H)

    def forward(self) -> torch.Tensor:
        return self.vectors[None]  # (1, n, H): a batch of one pseudo-statement
