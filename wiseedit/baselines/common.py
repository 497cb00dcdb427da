"""Small pieces the baselines share: where the edited module is, how an edit becomes tokens and a loss,
freezing the model while one tensor trains, and what a module hook needs to know about the call."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wiseedit.errors import BadInputError
from wiseedit.models.kv_cache import extends_cache
from wiseedit.models.modules import get_weight_module
from wiseedit.methods.training import frozen  # noqa: F401  (re-exported for the baselines)
from wiseedit.models.presets import edited_module_path


def resolve_module(model: nn.Module, module: str | None = None, layer: int | None = None
                   ) -> tuple[str, nn.Module]:
    """The edited module's dotted path and the module itself. By default the architecture's FFN value
    module at ~80% depth (the one WISE edits); `layer` picks another layer, `module` any path."""
    path = edited_module_path(model.config, layer=layer, module=module)
    return path, get_weight_module(model, path)


@dataclass(frozen=True)
class EncodedEdit:
    """One edit as the model reads it: BOS + prompt tokens, then the target tokens (teacher-forced)."""

    input_ids: torch.Tensor  # (1, T)
    prompt_len: int  # tokens before the target, BOS included; the key is at prompt_len - 1
    target_ids: torch.Tensor  # (L,)


def encode_edit(tokenizer, prompt: str, target: str, device: torch.device) -> EncodedEdit:
    """Tokenize ``prompt + " " + target`` as two pieces, so the target tokens are exactly those of
    ``" " + target`` whatever the tokenizer would merge across the boundary."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    target_ids = tokenizer(" " + target.lstrip(), add_special_tokens=False)["input_ids"]
    if not target_ids:
        raise ValueError(f"empty target for prompt {prompt!r}")
    ids = torch.tensor([prompt_ids + target_ids], device=device)
    return EncodedEdit(ids, len(prompt_ids), torch.tensor(target_ids, device=device))


def target_nll(logits: torch.Tensor, edit: EncodedEdit) -> torch.Tensor:
    """Mean negative log-likelihood of the target tokens; logits (1, T, V) of ``edit.input_ids``."""
    # the token at position t is predicted by the logits at t - 1
    pred = logits[0, edit.prompt_len - 1 : -1].float()  # (L, V)
    return F.cross_entropy(pred, edit.target_ids)


def target_hits(logits: torch.Tensor, edit: EncodedEdit) -> torch.Tensor:
    """(L,) bool: whether the argmax at each target position is the target token."""
    return logits[0, edit.prompt_len - 1 : -1].argmax(-1) == edit.target_ids




@dataclass(frozen=True)
class ModelCall:
    """What a method needs to know about the forward call in progress."""

    attention_mask: torch.Tensor | None  # as passed: (B, T) for ordinary calls, 4D for compiled caches
    extends_cache: bool  # True when a KV cache already holds earlier tokens (a decode step)


class CallTracker:
    """Records, for the duration of each forward call of `model`, its attention mask and whether it
    extends a KV cache: module hooks only see hidden states, and must tell prefill from decode."""

    def __init__(self, model: nn.Module):
        self._signature = inspect.signature(model.forward)  # binds masks passed positionally too
        self.current: ModelCall | None = None
        self._handles = [
            model.register_forward_pre_hook(self._enter, with_kwargs=True),
            model.register_forward_hook(self._exit, always_call=True),
        ]

    def _enter(self, model, args, kwargs) -> None:
        try:
            bound = self._signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = kwargs
        self.current = ModelCall(bound.get("attention_mask"), extends_cache(bound))

    def _exit(self, model, args, output) -> None:
        self.current = None

    def remove(self) -> None:
        """Unhook from the model."""
        for handle in self._handles:
            handle.remove()


def last_true(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last True of each row of `mask` (B, T), or -1 for a row with none."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    return torch.where(mask, idx, -1).max(dim=-1).values


def check_config_options(method: str, parse: Callable[[dict], object], options: dict) -> None:
    """Run `parse` (a baseline config's ``from_options``, which raises ValueError on a bad option) over
    `options`, its error as BadInputError naming `method`: the baselines' ``check_options``."""
    try:
        parse(options)
    except ValueError as error:
        raise BadInputError(f"invalid options for method {method}: {error}") from error
