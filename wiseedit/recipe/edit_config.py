"""RECIPE's edit-time settings: which meta-trained checkpoint, how the store is searched, and the gate
that decides whether the top-1 edit's prompt is used (see :mod:`wiseedit.recipe.method`).

The settings of meta-training (the networks' sizes, losses, steps) are :class:`~wiseedit.recipe.config
.RecipeConfig`, saved with the checkpoint; these are the options of ``wiseedit edit --method recipe``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from types import MappingProxyType
from typing import Any, Literal, get_args

from wiseedit.errors import BadInputError
from wiseedit.methods.config import MethodConfig
from wiseedit.methods.option_checks import choice_problem, whole_number_problem
from wiseedit.recipe.store import IndexKind

Gate = Literal["cosine", "sentinel"]
#: The gates, and the store metric each ranks by.
GATE_METRICS = MappingProxyType({"sentinel": "dot", "cosine": "cosine"})


@dataclass
class RecipeEditConfig(MethodConfig):
    """RECIPE's options at edit time; the defaults are ours (the paper's rule is ``gate="sentinel"``)."""

    label = "RECIPE"

    checkpoint: str | None = None  # a checkpoint folder or a training out_dir (required)
    index: IndexKind = "exact"  # "hnsw": an approximate index for stores of 10^5+ edits (faiss)
    query_cache_size: int = 4096  # query keys remembered per token sequence (repeated prompts)
    gate: Gate = "cosine"  # "cosine": a bar per edit and the sentinel's veto; "sentinel": the paper's
    sentinel_offset: float = 0.0  # how far the top-1 must beat the sentinel (higher: stricter)
    cosine_ratio: float = 0.9  # gate "cosine": a query's cosine must exceed this x the edit's own prompt's

    def __post_init__(self) -> None:
        if self.checkpoint is None:
            raise BadInputError("RECIPE needs a meta-trained checkpoint for this model: give the option "
                                "checkpoint=<folder> (made by wiseedit train-recipe)")
        super().__post_init__()
        # JSON and the CLI give ints for whole numbers: the gate computes in floats
        self.sentinel_offset, self.cosine_ratio = float(self.sentinel_offset), float(self.cosine_ratio)

    def problem(self) -> str | None:
        checkpoint = self.checkpoint
        if not isinstance(checkpoint, (str, PathLike)) or not str(checkpoint).strip():
            return f"checkpoint must be a folder path (a checkpoint or a training out_dir), got {checkpoint!r}"
        offset, ratio = self.sentinel_offset, self.cosine_ratio
        problems = (
            choice_problem("index", self.index, get_args(IndexKind)),
            whole_number_problem("query_cache_size", self.query_cache_size, 0),
            choice_problem("gate", self.gate, tuple(GATE_METRICS)),
            (isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset))
            and f"sentinel_offset must be a number (0: the paper's rule, higher: stricter retrieval), got "
                f"{offset!r}",
            (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio)
             or ratio <= 0)
            and f"cosine_ratio must be a number > 0 (0.9: a query is answered by an edit it is at least 0.9 "
                f"times as close to as the edit's own prompt), got {ratio!r}",
        )
        return next((p for p in problems if p), None)

    @staticmethod
    def saved_in(delta_config: dict) -> dict:
        """The object holding these settings in a delta's parsed ``wiseedit_config.json``, to read or edit
        in place: ``method_settings``, or ``method_state.options`` in a delta of format 1."""
        if "method_settings" in delta_config:
            return delta_config["method_settings"]
        return delta_config["method_state"]["options"]

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values["checkpoint"] = str(self.checkpoint)  # a Path given from Python is saved as text
        return values
