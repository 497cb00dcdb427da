"""The key router's threshold in the auto preset, from how much context moves a key on this model.

The key router fires when the centred input at a position has cosine >= ``key_threshold`` with an
edit's key (the input at the edit prompt's last token). That separates an edit from a text sharing
its last word only if context moves the input: on a trained model, or a random Llama, one token in two
unrelated texts gives keys of median cosine .08-.16 (world, world-xl, GPT-2, Llama); a random GPT-J
(parallel attention and MLP reading one layer norm) hardly carries context to the edited layer, and
the median is .87, so at 0.8 every text ending in an edited word fires (Loc .37-.70 on generated edit
sets). The auto threshold is therefore ``max(0.8, median + 0.1)``: 0.8 where context matters (the
value measured on the world suite), above the context-free similarity where it does not (GPT-J .97:
Loc .98-1.00 at Rel 1.00; docs/wise.md "Routing on models that ignore context").
"""

from __future__ import annotations

import torch

#: The threshold where context moves keys (chosen on the world suite: docs/wise.md).
KEY_THRESHOLD_FLOOR = 0.8
#: How far above the context-free similarity of one token the threshold sits.
CONTEXT_MARGIN = 0.1
#: Occurrences of one token compared with each other (bounds the cost on a large pool).
_PER_TOKEN = 16


def context_similarity(keys: torch.Tensor, token_ids: torch.Tensor, previous_ids: torch.Tensor,
                       text_index: torch.Tensor) -> float:
    """Median cosine between the keys (N, in) (unit length) of one token in two different texts after
    two different tokens; nan when the pool has no such pair. The other three arguments are (N,)
    per key: its token, the token before it (-1 at the start), the text it comes from."""
    sims = []
    for token in token_ids.unique():
        at = (token_ids == token).nonzero().squeeze(1)[:_PER_TOKEN]
        if at.numel() < 2:
            continue
        pair = (previous_ids[at, None] != previous_ids[None, at]) & (text_index[at, None] != text_index[None, at])
        pair = pair.triu(1)
        if pair.any():
            sims.append((keys[at] @ keys[at].t())[pair])
    return torch.cat(sims).median().item() if sims else float("nan")


def auto_key_threshold(similarity: float) -> float:
    """``max(KEY_THRESHOLD_FLOOR, similarity + CONTEXT_MARGIN)``, capped below 1 (an exact repeat of
    an edit's prompt must still fire); the floor alone when the similarity is unknown (nan)."""
    if similarity != similarity:  # nan: no pair to measure on
        return KEY_THRESHOLD_FLOOR
    return min(0.99, max(KEY_THRESHOLD_FLOOR, similarity + CONTEXT_MARGIN))
