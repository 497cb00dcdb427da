"""The settings of one meta-training run (``wiseedit train-recipe``), as one typed object.

:class:`TrainSettings` holds what a run is asked for: how long, from which seed, whether to resume, on
which device, and the :class:`~wiseedit.recipe.config.RecipeConfig` fields given. A field left None
was not given: a resumed run takes the checkpoint's value, a fresh run the preset's (seed 0). The CLI
builds one from its flags; :func:`wiseedit.recipe.training.run.train` takes it. No torch import here,
so that the CLI checks its flags before loading anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from wiseedit.errors import BadInputError
from wiseedit.recipe.config import Batches, KeyInit, Preset, PromptInput, RecipeConfig, check_choice

#: Steps a run trains for in total unless told otherwise: the best configuration's (docs/results.md).
DEFAULT_STEPS = 5000

#: The TrainSettings fields that are RecipeConfig fields of the same name.
CONFIG_FIELDS = ("batch_size", "lr", "encoder_lr", "bank_refresh", "prompt_input", "key_init", "edit_margin",
                 "batches", "ema_decay", "checkpoint_every")


@dataclass(frozen=True)
class TrainSettings:
    """How to meta-train (see the module docstring; None: not given). Bad values raise BadInputError in
    one sentence when the object is made."""

    steps: int = DEFAULT_STEPS         # train until this many steps are done in total (resumed ones count)
    preset: Preset | None = None       # "default" (the best measured) or "paper" (RecipeConfig.preset)
    encoder: str | None = None         # minilm, roberta-base, a folder or a cached Hugging Face id
    seed: int | None = None            # initialisation and batch order (fresh runs: 0)
    resume: bool = True                # False: discard the checkpoints in out and start at step 0
    device: str = "auto"
    dtype: str = "auto"
    # -- RecipeConfig fields (CONFIG_FIELDS); their meaning is documented there
    batch_size: int | None = None
    lr: float | None = None
    encoder_lr: float | None = None
    bank_refresh: int | None = None
    prompt_input: PromptInput | None = None
    key_init: KeyInit | None = None
    edit_margin: float | None = None
    batches: Batches | None = None
    ema_decay: float | None = None
    checkpoint_every: int | None = None  # may differ from a resumed checkpoint's

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise BadInputError(f"steps must be at least 1, got {self.steps}")
        if self.preset is not None:
            RecipeConfig.preset(self.preset)  # refuses an unknown name
        given = self.config_fields()
        for name in ("prompt_input", "key_init", "batches"):
            if name in given:
                check_choice(name, given[name])
        RecipeConfig(**given)  # every other value is checked where the config checks itself

    def config_fields(self) -> dict:
        """The RecipeConfig fields given (those not None), by name."""
        return {name: getattr(self, name) for name in CONFIG_FIELDS if getattr(self, name) is not None}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
