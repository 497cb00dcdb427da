"""GRACE (Hartvigsen et al., NeurIPS 2023): a discrete key-value codebook in front of one module.

Each codebook entry is (key, value, radius, label). The key is the wrapped module's *input* at the last
prompt token; when a new input's key lies within an entry's radius of the nearest stored key, the
module's *output* is replaced by that entry's value, otherwise the module runs unchanged. An edit adds
or adjusts one entry (:meth:`GraceCodebook.insert`) and trains its value by gradient descent on the
target's negative log-likelihood; no model weight changes.

Where the output is replaced (``replacement``):
- ``"last"`` (default; EasyEdit's ``replace_last``): only at the key position. Tokens after it (the
  teacher-forced target, or the tokens `generate` produces) see the new value through attention, so
  greedy decoding with a KV cache is exactly the teacher-forced computation.
- ``"all"`` (EasyEdit's ``replace_all``): at every position of a routed row. The decision is made at
  prefill and kept for the tokens generated after it.

Routing is decided per row, once, from the prompt: inside ``query_tokens(mask)`` the key is taken at
the last masked token of each row; otherwise at the last attended token (`attention_mask`), or the last
position. Calls that extend a KV cache never re-route (the reference code re-routes every new token).

Defaults vs the paper / EasyEdit LLaMA-2 preset (``preset="paper"`` restores them):
- radius ``eps`` = 0.1 x the norm of the edit's key, not 1.0 absolute: a distance in activation units
  means different things on different models (with HF's default init 0.02, tiny 32-wide models' keys have
  norms ~0.05, so a radius of 1.0 routed every prompt to every entry);
- warm value init (the module's own output: deterministic, starts from "no change") instead of U[0, 1);
- early stop once every target token is the argmax and the loss is below 0.01 or stops improving
  (< 1e-3 nats per step); the reference always runs the `n_iter` (100) steps;
- when a new key lands on an existing key (distance 0) with another label, that entry is taken over
  (a re-edit of the same prompt); a split never *widens* a radius (min with d/2).
Adam with lr 1.0 (EasyEdit's optimiser, despite its ``val_train: sgd``) and `n_iter` 100 are kept.
The module is the one WISE edits, so the baselines of the tables change the same place.
"""

from __future__ import annotations

import torch
from torch import nn

from wiseedit.baselines.common import (
    CallTracker, encode_edit, frozen, last_true, resolve_module, target_hits, target_nll,
)
from wiseedit.baselines.grace.codebook import GraceCodebook
from wiseedit.baselines.grace.config import GraceConfig
from wiseedit.baselines.single_module import SingleModuleMethod
from wiseedit.edits.record import EditRecord
from wiseedit.models.modules import is_conv1d


class GraceMethod(SingleModuleMethod):
    """GRACE behind the common interface; everything it depends on is in `config` and `codebook`."""

    name = "grace"
    config_class = GraceConfig

    def __init__(self, model, tokenizer, config: GraceConfig, codebook: GraceCodebook | None = None,
                 num_edits: int = 0, path: str | None = None):
        super().__init__(model, tokenizer, config, num_edits, path)
        weight = self.module.weight  # Linear: (d_out, d_in); GPT-2 Conv1D: (d_in, d_out)
        d_in, d_out = weight.shape[::-1] if not is_conv1d(self.module) else weight.shape
        self.codebook = codebook if codebook is not None else GraceCodebook.empty(
            d_in, d_out, weight.device, weight.dtype)
        self._calls = CallTracker(model)  # per call: attention mask, prefill or cache extension
        self._routed: torch.Tensor | None = None  # (B,) entry per row from the last prefill, -1 none
        self._train: tuple[int, nn.Parameter] | None = None  # (position, value) while training
        self._hook = self.module.register_forward_hook(self._forward_hook)

    @classmethod
    def _from_saved(cls, model, tokenizer, config, tensors, num_edits, path) -> "GraceMethod":
        if tensors is None:
            return cls(model, tokenizer, config)
        weight = resolve_module(model, path)[1].weight
        book = GraceCodebook.from_tensors(tensors, weight.device, weight.dtype)
        return cls(model, tokenizer, config, book, num_edits, path)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return self.codebook.tensors()

    @property
    def seed(self) -> int:
        """Seeds the cold init of the values (entry i: seed + i)."""
        return self.config.seed

    def detach(self) -> None:
        self._hook.remove()
        self._calls.remove()
        self._hook = None
        self.attached = False

    def summary(self) -> dict:
        return {"method": self.name, "module": self.path, "edits": self.num_edits,
                "entries": len(self.codebook), "replacement": self.config.replacement}

    # --- editing -------------------------------------------------------------------------------

    def _edit(self, edit: EditRecord) -> None:
        device = self.module.weight.device
        enc = encode_edit(self.tokenizer, edit.prompt, edit.target, device)
        pos = enc.prompt_len - 1  # the last prompt token: where the key is read and the value goes
        key, out = self._probe(enc.input_ids, pos)  # (d_in,), (d_out,)
        scale = key.float().norm().item() if self.config.eps_unit == "key_norm" else 1.0
        radius = self.config.eps * scale
        if self.config.value_init == "cold":
            gen = torch.Generator(device="cpu").manual_seed(self.config.seed + len(self.codebook))
            init = torch.rand(out.shape, generator=gen)
        else:
            init = out.float()
        entry = self.codebook.insert(key, init.to(out.dtype), radius, enc.target_ids)
        value = nn.Parameter(self.codebook.values[entry].float().clone())  # fp32 master copy
        opt = torch.optim.Adam([value], lr=self.config.lr)
        self._train = (pos, value)
        try:
            with frozen(self.model), torch.enable_grad():
                previous = float("inf")
                for _ in range(self.config.n_iter):
                    logits = self.model(input_ids=enc.input_ids).logits
                    loss = target_nll(logits, enc)
                    if self._converged(loss.item(), previous) and bool(target_hits(logits, enc).all()):
                        break
                    previous = loss.item()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        finally:
            self._train = None
        self.codebook.set_value(entry, value.detach())

    def _converged(self, loss: float, previous: float) -> bool:
        low = self.config.stop_loss is not None and loss <= self.config.stop_loss
        flat = self.config.plateau is not None and previous - loss < self.config.plateau
        return low or flat

    @torch.no_grad()
    def _probe(self, input_ids: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The module's input and output at `pos` as the base module computes them (read by a hook
        that runs before the codebook's)."""
        seen = {}

        def grab(module, args, output):
            seen["key"], seen["out"] = args[0][0, pos].clone(), output[0, pos].clone()

        handle = self.module.register_forward_hook(grab, prepend=True)  # runs before routing
        try:
            self.model(input_ids=input_ids)
        finally:
            handle.remove()
        return seen["key"], seen["out"]

    # --- inference -----------------------------------------------------------------------------

    def _forward_hook(self, module, args, output: torch.Tensor) -> torch.Tensor | None:
        x = args[0]  # (B, T, d_in)
        if self._train is not None:
            pos, value = self._train
            output = output.clone()  # (1, T, d_out): the edit being trained, replaced as at inference
            if self.config.replacement == "last":
                output[:, pos] = value.to(output.dtype)
            else:
                output[:] = value.to(output.dtype)
            return output
        call = self._calls.current
        if call is not None and call.extends_cache:
            return self._replace_cached(output)
        self._routed = None
        if len(self.codebook) == 0:
            return None
        B, T, _ = x.shape
        positions = self._key_positions(call, B, T, x.device)  # (B,), -1 where nothing to read
        rows = torch.arange(B, device=x.device)
        entry = self.codebook.route(x[rows, positions.clamp(min=0)])  # (B,), -1 outside every radius
        entry = torch.where(positions >= 0, entry, -1)
        self._routed = entry
        hit = entry >= 0
        if not bool(hit.any()):
            return None
        output = output.clone()
        values = self.codebook.values[entry[hit]].to(output.dtype)  # (H, d_out)
        if self.config.replacement == "last":
            output[rows[hit], positions[hit]] = values
        else:
            output[hit] = values[:, None, :].expand(-1, T, -1)
        return output

    def _replace_cached(self, output: torch.Tensor) -> torch.Tensor | None:
        """A call extending a KV cache: keep the prefill's decision ("all" replaces the new tokens)."""
        routed = self._routed
        if self.config.replacement == "last" or routed is None or routed.shape[0] != output.shape[0]:
            return None
        hit = routed >= 0
        if not bool(hit.any()):
            return None
        output = output.clone()
        output[hit] = self.codebook.values[routed[hit]].to(output.dtype)[:, None, :]
        return output

    def _key_positions(self, call, B: int, T: int, device) -> torch.Tensor:
        """(B,) the position of each row's key: last query-mask token, else last attended token."""
        mask = self._query_mask
        if mask is None or tuple(mask.shape) != (B, T):
            mask = call.attention_mask if call is not None else None
        if mask is None or mask.dim() != 2 or tuple(mask.shape) != (B, T):
            return torch.full((B,), T - 1, device=device, dtype=torch.long)
        return last_true(mask.to(device).bool())
