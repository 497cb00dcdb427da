"""FT-L: fine-tune one module's weight on each edit (Zhu et al. 2020; the EasyEdit "FT" editor).

The edited module is the one WISE edits (the FFN value module at ~80% depth), with no router: every
input sees the change, which is why FT-L forgets and breaks locality in the lifelong tables. Per edit:
a fresh Adam over the weight's change, loss = NLL of the target tokens given the prompt, optionally
clamped to an L-inf ball around the original weight.

The change is trained and kept as a float32 delta D (same layout as the weight, so (in, out) for GPT-2's
Conv1D); the live weight is always ``(W0.float() + D).to(dtype)``. Saving D and recomputing that on
restore gives bit-identical weights, and ``detach`` copies W0 back, exactly. Training D in float32
through a hook (output + x D) rather than stepping a bf16 weight keeps Adam's small steps from rounding
away on half-precision models.

Defaults are EasyEdit's FT preset for LLaMA-2-7B: Adam lr 5e-4, 25 steps, no norm constraint, stop once
the loss is below 1e-2. They are tuned to 7B models: on the tiny test models (initializer_range 0.2, 10x
Llama-2's 0.02) 25 steps at 5e-4 do not recall an edit on llama (measured), so the tests pass lr 5e-3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wiseedit.baselines.common import (
    check_config_options, encode_edit, frozen, resolve_module, target_nll,
)
from wiseedit.edits.record import EditRecord
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.methods.option_checks import number_problem, placement_problem, whole_number_problem
from wiseedit.models.modules import is_conv1d


@dataclass
class FineTuneConfig:
    """FT-L's settings; the defaults are EasyEdit's FT preset for LLaMA-2-7B (the layer aside: we edit
    WISE's module, EasyEdit's FT preset layer 21)."""

    module: str | None = None  # edited module path ("{i}" = `layer`); None: the architecture's default
    layer: int | None = None  # layer of the default module; None: the FFN value module at ~80% depth
    lr: float = 5e-4  # Adam learning rate
    n_iter: int = 25  # optimisation steps per edit
    weight_decay: float = 0.0  # Adam weight decay (on the delta)
    norm_constraint: float | None = None  # L-inf bound on W - W0 per entry (EasyEdit "constr": 5e-4)
    stop_loss: float | None = 0.01  # stop an edit once its target NLL is below this (EasyEdit: 1e-2)

    def __post_init__(self):
        """Refuse (ValueError, one sentence) the first field of the wrong type or out of range."""
        problems = (
            self.layer is not None and whole_number_problem("layer", self.layer, 0),
            placement_problem(self.module, self.layer),
            number_problem("lr", self.lr, 0, above=True),
            whole_number_problem("n_iter", self.n_iter, 1),
            number_problem("weight_decay", self.weight_decay, 0),
            self.norm_constraint is not None and number_problem("norm_constraint", self.norm_constraint, 0,
                                                                above=True, infinite=True),
            self.stop_loss is not None and number_problem("stop_loss", self.stop_loss, 0, infinite=True),
        )
        problem = next((p for p in problems if p), None)
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_options(cls, options: dict | None) -> "FineTuneConfig":
        """Defaults overridden by `options` (``preset="paper"`` is accepted: it is the default)."""
        options = dict(options or {})
        preset = options.pop("preset", None)
        if preset not in (None, "paper"):
            raise ValueError(f"unknown FT-L preset {preset!r}; choose 'paper'")
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown FT-L options: {', '.join(sorted(unknown))}")
        return cls(**options)


class FineTuneMethod(EditingMethod):
    """FT-L behind the common interface: the original weight W0 and the trained delta D."""

    name = "ft-l"

    def __init__(self, model, tokenizer, config: FineTuneConfig, delta: torch.Tensor | None = None,
                 num_edits: int = 0, path: str | None = None):
        super().__init__(model, tokenizer)
        self.config = config
        # a restored method uses the exact path it was saved with, whatever the presets say today
        self.path, self.module = resolve_module(model, path) if path else resolve_module(
            model, config.module, config.layer)
        weight = self.module.weight
        self.original = weight.detach().clone()  # W0, the base weight detach() puts back
        self.delta = (torch.zeros(weight.shape, device=weight.device, dtype=torch.float32)
                      if delta is None else delta.to(device=weight.device, dtype=torch.float32))
        self.num_edits = num_edits
        self._detached = False
        self._merge()

    @classmethod
    def check_options(cls, options: dict) -> None:
        """What :meth:`create` refuses before it needs the model (:meth:`FineTuneConfig.from_options`), as
        BadInputError."""
        check_config_options(cls.name, FineTuneConfig.from_options, options)

    @classmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> "FineTuneMethod":
        return cls(model, tokenizer, FineTuneConfig.from_options(options))

    @classmethod
    def restore(cls, model, tokenizer, state: MethodState) -> "FineTuneMethod":
        config = dict(state.config)
        num_edits, path = int(config.pop("num_edits")), config.pop("module_path")
        config.pop("format", None)
        return cls(model, tokenizer, FineTuneConfig(**config), state.tensors["delta"], num_edits, path)

    def state(self) -> MethodState:
        config = asdict(self.config) | {"format": 1, "module_path": self.path, "num_edits": self.num_edits}
        return MethodState(config=config, tensors={"delta": self.delta})

    @torch.no_grad()
    def detach(self) -> None:
        self.module.weight.copy_(self.original)
        self._detached = True

    def summary(self) -> dict:
        return {"method": self.name, "module": self.path, "edits": self.num_edits,
                "delta_max_abs": float(self.delta.abs().max()) if self.delta.numel() else 0.0}

    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        if self._detached:
            raise RuntimeError("this FT-L method was detached: create or restore a new one to edit")
        for i, edit in enumerate(edits):
            self._edit(edit)
            self.num_edits += 1
            if progress:
                progress(i + 1, len(edits))

    def _edit(self, edit: EditRecord) -> None:
        enc = encode_edit(self.tokenizer, edit.prompt, edit.target, self.module.weight.device)
        delta = nn.Parameter(self.delta.clone())  # (weight shape), float32 even for a bf16 model
        opt = torch.optim.Adam([delta], lr=self.config.lr, weight_decay=self.config.weight_decay)
        bound = self.config.norm_constraint
        conv1d = is_conv1d(self.module)

        def add_delta(module, args, output):
            # the weight holds W0 while training, so output = x W0 (+ b) + x D, with x D in float32
            x = args[0].float()
            extra = x @ delta if conv1d else F.linear(x, delta)  # (B, T, d_out)
            return output + extra.to(output.dtype)

        with torch.no_grad():
            self.module.weight.copy_(self.original)
        handle = self.module.register_forward_hook(add_delta)
        try:
            with frozen(self.model), torch.enable_grad():
                for _ in range(self.config.n_iter):
                    loss = target_nll(self.model(input_ids=enc.input_ids).logits, enc)
                    if self.config.stop_loss is not None and loss.item() < self.config.stop_loss:
                        break
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if bound is not None:
                        with torch.no_grad():
                            delta.clamp_(-bound, bound)
            self.delta = delta.detach()
        finally:
            handle.remove()
            self._merge()

    @torch.no_grad()
    def _merge(self) -> None:
        """Live weight = W0 + D, computed in float32 and rounded once to the weight's dtype."""
        weight = self.module.weight
        weight.copy_((self.original.float() + self.delta).to(weight.dtype))
