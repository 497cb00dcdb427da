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

import torch
import torch.nn.functional as F
from torch import nn

from wiseedit.baselines.common import encode_edit, frozen, target_nll
from wiseedit.baselines.ft_l.config import FineTuneConfig
from wiseedit.baselines.single_module import SingleModuleMethod
from wiseedit.edits.record import EditRecord
from wiseedit.models.modules import is_conv1d


class FineTuneMethod(SingleModuleMethod):
    """FT-L behind the common interface: the original weight W0 and the trained delta D."""

    name = "ft-l"
    config_class = FineTuneConfig

    def __init__(self, model, tokenizer, config: FineTuneConfig, delta: torch.Tensor | None = None,
                 num_edits: int = 0, path: str | None = None):
        super().__init__(model, tokenizer, config, num_edits, path)
        weight = self.module.weight
        self.original = weight.detach().clone()  # W0, the base weight detach() puts back
        self.delta = (torch.zeros(weight.shape, device=weight.device, dtype=torch.float32)
                      if delta is None else delta.to(device=weight.device, dtype=torch.float32))
        self._merge()

    @classmethod
    def _from_saved(cls, model, tokenizer, config, tensors, num_edits, path) -> "FineTuneMethod":
        return cls(model, tokenizer, config, tensors["delta"] if tensors is not None else None, num_edits, path)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"delta": self.delta}

    @torch.no_grad()
    def detach(self) -> None:
        self.module.weight.copy_(self.original)
        self.attached = False

    def summary(self) -> dict:
        return {"method": self.name, "module": self.path, "edits": self.num_edits,
                "delta_max_abs": float(self.delta.abs().max()) if self.delta.numel() else 0.0}

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
