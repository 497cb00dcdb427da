"""Everything RECIPE trains, in one module: the encoder, MLP_K, MLP_Q, MLP_P and the sentinel.

The LLM is not part of it: it stays frozen, and a checkpoint of these networks is tied to one base LLM
(its hidden size, and the behaviour the prompts were trained to steer).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wiseedit.recipe.config import RecipeConfig
from wiseedit.recipe.encoder import POOLED_PARTS, SentenceEncoder
from wiseedit.recipe.heads import KeyHead, PromptHead, Sentinel


def statement(prompt: str, target: str) -> str:
    """The knowledge statement of an edit: what its key and prompt vectors are made from."""
    return f"{prompt} {target}"


class RecipeNetworks(nn.Module):
    """The trained parts of RECIPE for an LLM of hidden size `d_llm`."""

    def __init__(self, encoder: SentenceEncoder, config: RecipeConfig, d_llm: int):
        super().__init__()
        self.config = config
        self.d_llm = d_llm
        self.encoder = encoder
        self.knowledge_head = KeyHead(encoder.pooled_size, config.d_r)  # MLP_K
        self.query_head = KeyHead(encoder.pooled_size, config.d_r)  # MLP_Q
        if config.key_init == "mean":
            start = POOLED_PARTS.index("mean") * encoder.hidden_size
            self.knowledge_head.start_as(slice(start, start + encoder.hidden_size))
        # MLP_Q starts as a copy of MLP_K (separate weights): a query then starts out retrieving the
        # statement whose pooled encoding is closest to its own (lexical overlap), which training
        # refines; independent inits make early retrieval random and generalise worse on small data.
        self.query_head.load_state_dict(self.knowledge_head.state_dict())
        # MLP_P reads the knowledge key (the paper) or the encoder's pooled output (config.prompt_input)
        reads_pooled = config.prompt_input == "pooled"
        self.prompt_head = PromptHead(config.d_r, config.prompt_tokens, d_llm,
                                      input_size=encoder.pooled_size if reads_pooled else None)
        self.sentinel = Sentinel(config.sentinel_tokens, encoder.hidden_size)

    def knowledge(self, statements: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Knowledge keys r_k (B, d_r) and continuous prompts (B, l, d_llm) of statements
        ``prompt + " " + target``."""
        pooled = self.encoder(statements)  # (B, 4H)
        keys = self.knowledge_head(pooled)
        return keys, self.prompts(keys, pooled)

    def query_keys(self, queries: list[str]) -> torch.Tensor:
        """Query keys r_q of input texts: (B, d_r)."""
        return self.query_head(self.encoder(queries))

    def prompts(self, keys: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Continuous prompts (B, l, d_llm) of statements with knowledge keys `keys` (B, d_r) and
        pooled encodings `pooled` (B, 4H); which of the two MLP_P reads is ``config.prompt_input``."""
        return self.prompt_head(pooled if self.config.prompt_input == "pooled" else keys)

    def sentinel_key(self) -> torch.Tensor:
        """The sentinel's knowledge key: (d_r,)."""
        return self.knowledge_head(self.encoder.encode_embeds(self.sentinel()))[0]

    def similarity(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Scaled dot product (not cosine) of queries (Q, d_r) with keys (N, d_r): (Q, N)."""
        return queries @ keys.T / math.sqrt(self.config.d_r)
