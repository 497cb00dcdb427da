"""The negatives bank: every training statement's key, as extra retrieval negatives in meta-training.

A batch of 8 statements asks the retriever and the sentinel to win against 7 candidates; a store at
editing time holds hundreds or thousands. The bank holds the knowledge key of every training statement,
recomputed without gradient every ``bank_refresh`` steps (a stale copy, as in MoCo's queue), and joins
them to each step's candidates, so that the sentinel is trained against as many statements as a store
will hold.

Some statements answer a query as rightly as its own edit: another edit of the same prompt (a train
file may hold several answers to one prompt), or the edit a locality probe happens to ask about (the
world's train split draws other-person probes from people it also edits). A statement whose edit
lists the query's text as its prompt or a paraphrase is therefore no candidate for that query; neither
are the stale copies of the batch's own statements.
"""

from __future__ import annotations

from typing import Sequence

import torch

from wiseedit.recipe.training.data import TrainItem


class NegativesBank:
    """Keys (N, d_r) of the N training items' statements, refreshed every `every` steps."""

    def __init__(self, items: Sequence[TrainItem], every: int):
        self.items = items
        self.every = every
        self.keys: torch.Tensor | None = None
        self.computed_at = -1  # the step whose networks computed `keys`
        self._askers: dict[str, list[int]] = {}  # query text -> items that list it as prompt or paraphrase
        for index, item in enumerate(items):
            for text in {item.prompt, *item.rephrases}:
                self._askers.setdefault(text, []).append(index)

    def refresh(self, networks, step: int, batch_size: int) -> None:
        """Recompute the keys with the current `networks` if `step` is a refresh step (or none exist)."""
        if self.keys is not None and (step % self.every or step == self.computed_at):
            return
        was_training = networks.training
        networks.eval()  # no dropout: the bank is a deterministic function of the weights
        try:
            with torch.no_grad():
                texts = [item.statement for item in self.items]
                self.keys = torch.cat([networks.knowledge_head(networks.encoder(texts[i: i + batch_size]))
                                       for i in range(0, len(texts), batch_size)])
        finally:
            networks.train(was_training)
        self.computed_at = step

    def excluded(self, picked: list[int], queries: Sequence[str], device) -> torch.Tensor:
        """(B, B + N) mask of the statements (batch, then bank) that are no candidates for each query."""
        B, N = len(picked), len(self.items)
        mask = torch.zeros(B, B + N, dtype=torch.bool)
        mask[:, [B + i for i in picked]] = True  # the stale copies of the batch's own statements
        for row, text in enumerate(queries):
            askers = self._askers.get(text, [])
            if askers:
                mask[row, [B + i for i in askers]] = True
                for col, index in enumerate(picked):
                    mask[row, col] |= col != row and index in askers
        return mask.to(device)

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps, so that a resumed run uses the very keys an uninterrupted one would."""
        return {"bank.keys": self.keys.detach().cpu().contiguous(), "bank.step": torch.tensor(self.computed_at)}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        if "bank.keys" in state:
            self.keys = state["bank.keys"]
            self.computed_at = int(state["bank.step"])
