"""The identity method: records edits and changes nothing (the baseline row of every table)."""

from __future__ import annotations

from typing import Sequence

from wiseedit.edits.record import EditRecord
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn


class NoEdit(EditingMethod):
    name = "none"

    def __init__(self, model, tokenizer, num_edits: int = 0):
        super().__init__(model, tokenizer)
        self.num_edits = num_edits

    @classmethod
    def create(cls, model, tokenizer, options=None):
        return cls(model, tokenizer)

    @classmethod
    def restore(cls, model, tokenizer, state):
        return cls(model, tokenizer, int(state.config.get("num_edits", 0)))

    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        for i, _ in enumerate(edits):
            self.num_edits += 1
            if progress:
                progress(i + 1, len(edits))

    def state(self) -> MethodState:
        return MethodState(config={"num_edits": self.num_edits})

    def detach(self) -> None:
        pass
