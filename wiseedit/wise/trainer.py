"""One WISE optimisation: train the current shard's side memory on a batch of edits (wise.md §4).

Loss = cross-entropy on the target tokens + the routing margin loss on the per-row scores
(``in`` = edit rows, ``out`` = irrelevant rows):

    L_a = pos(out - in + gamma) + pos(out - alpha) + pos(beta - in),  pos(v) = mean of v's positive entries

SGD on the delta ``W_side - W_main`` (in the auto preset with the key router, the gradient
preconditioned so that the tokens of an edit's own text learn apart: :mod:`wiseedit.wise.preconditioner`),
the shard mask applied to the gradient, the delta clamped to +- norm_constraint after every step,
early stop when the loss is small and flat.

Scale-free units (the "auto" preset): with S the mean norm of the residual stream after the edited
layer (``R`` of ``WiseMethod._measure_scale``, on the first edit's prompt tokens) and H^2 the mean
squared norm of the edited module's input, the margins are multiples of S, the margin loss is divided
by S, and the lr is a multiple of S^2 / H^2. An SGD step on a linear layer moves its output on an input h
by lr * (h . h') * dL/d(out) ~ lr * H^2 / S, so in these units one step moves the output by a fixed
fraction of S whatever the model's size. Weight decay acts on the delta, so entries outside the mask
stay exactly zero (the reference decays the whole side matrix).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wiseedit.methods.training import frozen
from wiseedit.wise.activation_cache import replay_lower_layers
from wiseedit.wise.batch import EditBatch
from wiseedit.wise.preconditioner import InputPreconditioner
from wiseedit.wise.side_memory import SideMemoryLayer
from wiseedit.wise.upper_stack import UpperStack


@dataclass
class Hyper:
    """The resolved numbers of one optimisation (absolute units)."""

    n_iter: int
    lr: float
    weight_decay: float
    alpha: float
    beta: float
    gamma: float
    margin_weight: float   # 1/S in the auto preset, 1 in the reference preset
    norm_constraint: float
    early_stop_loss: float
    early_stop_delta: float
    precondition: bool     # auto preset, key router: an edit's own tokens learn apart (preconditioner.py)


@dataclass
class ShardUpdate:
    """What one optimisation did to the current shard."""

    delta: torch.Tensor   # (out, in) float32, the shard's new delta
    steps: int
    loss: float


def _pos_mean(v: torch.Tensor) -> torch.Tensor:
    positive = v[v > 0]
    return positive.mean() if positive.numel() else v.new_zeros(())


def margin_loss(scores: torch.Tensor, num_edit_rows: int, hp: Hyper) -> torch.Tensor:
    """L_a of the module docstring; scores (B,) with the edit rows first."""
    inside, outside = scores[:num_edit_rows], scores[num_edit_rows:]
    if outside.numel() == 0:
        return _pos_mean(hp.beta - inside)
    return (_pos_mean(outside[:, None] - inside[None, :] + hp.gamma) + _pos_mean(outside - hp.alpha)
            + _pos_mean(hp.beta - inside))


class ShardTrainer:
    """Trains a side-memory delta on an :class:`EditBatch` through the wrapped model."""

    def __init__(self, model, layer: SideMemoryLayer, decoder_layers, layer_index: int):
        self.model = model
        self.layer = layer
        self.decoder_layers = decoder_layers
        self.layer_index = layer_index
        self.fast_path: tuple[bool, bool] | None | str = "unknown"  # verified once, kept for later edits

    def _logits_at_targets(self, batch: EditBatch, cached: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, V) at the positions that predict the N target tokens, and those tokens."""
        rows, cols = (batch.labels != -100).nonzero(as_tuple=True)
        targets = batch.labels[rows, cols]

        def before_targets(t: torch.Tensor) -> torch.Tensor:  # (B, T, ...) -> (N, ...)
            # indices follow the tensor they index: under device_map the last layer may sit elsewhere
            return t[rows.to(t.device), (cols - 1).to(t.device)]

        if cached:  # final hidden states only, the head only where the loss needs it
            hidden = self.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                           use_cache=False).last_hidden_state       # (B, T, d)
            logits = self.model.get_output_embeddings()(before_targets(hidden))  # (N, V)
        else:       # the reference's way: a full forward, every position's logits
            logits = before_targets(self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                               use_cache=False).logits)
        return logits, targets.to(logits.device)

    def train(self, batch: EditBatch, delta: torch.Tensor, mask: torch.Tensor, hp: Hyper,
              cached: bool = True) -> ShardUpdate:
        """Optimise `delta` on `batch`. `cached`: the fast path of :mod:`wiseedit.wise.upper_stack`
        (falling back to the activation replay where its check fails); False: a full forward per step."""
        delta = torch.nn.Parameter(delta.detach().clone())
        stack = None
        if cached:
            rows, cols = (batch.labels != -100).nonzero(as_tuple=True)
            with frozen(self.model):
                stack, self.fast_path = UpperStack.verified(self.model, self.decoder_layers, self.layer_index,
                                                            self.layer, batch, rows, cols - 1,
                                                            self.layer.main_weight, self.fast_path)
        if stack is not None:
            head = self.model.get_output_embeddings()
            targets = batch.labels[rows, cols].to(head.weight.device)          # (N,)
            precondition = self._preconditioner(stack.rec.h, batch) if hp.precondition else None
            if stack.shortcut:
                return self._optimise_through_inputs(stack, head, targets, batch, delta, mask, hp, precondition)

            def step_loss() -> torch.Tensor:
                dx = stack.extra_out(delta)                                    # (M, out), once per step
                logits = head(stack.final_hidden(delta, dx))                   # (N, V)
                ce = F.cross_entropy(logits.float(), targets)
                scores = stack.scores(dx, delta)                               # (B,)
                return ce + hp.margin_weight * margin_loss(scores, batch.num_edit_rows, hp)

            return self._optimise(step_loss, delta, mask, hp, nullcontext(), self._autograd(delta, precondition))
        captured: dict[str, torch.Tensor] = {}
        hook = self.layer.register_forward_pre_hook(lambda mod, args: captured.__setitem__("h", args[0]))

        def forward_once():
            with torch.no_grad():
                self.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                      use_cache=False)

        def step_loss() -> torch.Tensor:
            with self.layer.training_delta(delta):
                logits, targets = self._logits_at_targets(batch, cached)
            ce = F.cross_entropy(logits.float(), targets)
            scores = self.layer.scores(self.layer.delta_out(captured["h"], delta), delta, batch.prompt_mask)
            return ce + hp.margin_weight * margin_loss(scores, batch.num_edit_rows, hp)

        precondition = None
        if hp.precondition:
            forward_once()  # the module's input, which its delta does not change
            precondition = self._preconditioner(captured["h"], batch)
        replay = (replay_lower_layers(self.decoder_layers, self.layer_index, forward_once)
                  if cached else nullcontext())
        try:
            return self._optimise(step_loss, delta, mask, hp, replay, self._autograd(delta, precondition))
        finally:
            hook.remove()

    @staticmethod
    def _preconditioner(h: torch.Tensor, batch: EditBatch) -> InputPreconditioner:
        """The preconditioner of the module's inputs `h` (B, T, in) at the real tokens of the batch's
        bare rows (the edits' own texts)."""
        rows = torch.tensor(batch.bare_rows, dtype=torch.long, device=h.device)
        return InputPreconditioner(h[rows][batch.attention_mask.to(h.device)[rows].bool()])

    def _optimise_through_inputs(self, stack: UpperStack, head, targets: torch.Tensor, batch: EditBatch,
                                 delta: torch.nn.Parameter, mask: torch.Tensor, hp: Hyper,
                                 precondition: InputPreconditioner | None) -> ShardUpdate:
        """The fast path when the delta reaches the loss only through its products with fixed inputs
        X (M', in): the M tokens of ``dx`` and the centre. Per step ``D = X delta^T`` (M', out) is the
        leaf autograd differentiates, and the delta's gradient is ``P^T X`` with P = dL/dD: one product
        into a buffer kept across steps (no (out, in) tensor allocated per step, nor a second product
        for the centre), with the preconditioner folded into X once per edit (``P^T (X A)``)."""
        dx_rows = len(stack.h_tokens)
        inputs = stack.h_tokens                                                # (M, in)
        if self.layer.center is not None:
            inputs = torch.cat([inputs, self.layer.center[None].float().to(inputs.device)])  # (M + 1, in)
        lifted = inputs if precondition is None else precondition.lift(inputs)
        buffer = torch.empty_like(delta)
        products: dict[str, torch.Tensor] = {}

        def step_loss() -> torch.Tensor:
            d = products["d"] = self._input_products(inputs, delta)            # (M', out)
            dx, center_out = d[:dx_rows], (d[dx_rows] if len(d) > dx_rows else None)
            logits = head(stack.final_hidden(delta, dx))                       # (N, V)
            ce = F.cross_entropy(logits.float(), targets)
            scores = stack.scores(dx, delta, center_out)                       # (B,)
            return ce + hp.margin_weight * margin_loss(scores, batch.num_edit_rows, hp)

        return self._optimise(step_loss, delta, mask, hp, nullcontext(),
                              lambda: torch.mm(products["d"].grad.t(), lifted, out=buffer))

    def _input_products(self, inputs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``inputs @ delta^T`` (M', out), the leaf the step's autograd stops at."""
        return (inputs @ delta.detach().t()).requires_grad_()

    @staticmethod
    def _autograd(delta: torch.nn.Parameter, precondition: InputPreconditioner | None):
        """The delta's gradient as autograd left it, preconditioned in place where asked."""
        return (lambda: delta.grad) if precondition is None else (lambda: precondition(delta.grad))

    def _optimise(self, step_loss, delta: torch.nn.Parameter, mask: torch.Tensor, hp: Hyper,
                  context, gradient) -> ShardUpdate:
        """SGD on `delta` with the shard mask on its gradient, the clamp, and the early stop.

        The update is torch.optim.SGD's (no momentum: ``p -= lr * (g + weight_decay * p)``, the same
        operations), written out: the optimizer object's bookkeeping cost a millisecond a step."""
        prev, steps, loss_value = None, 0, float("nan")
        mask = mask.to(delta.dtype)  # once, not a conversion of the (out, in) mask at every step
        with frozen(self.model), context:  # gradients flow to the delta only
            for steps in range(1, hp.n_iter + 1):
                loss = step_loss()
                delta.grad = None
                loss.backward()
                with torch.no_grad():
                    grad = gradient().mul_(mask)
                    if hp.weight_decay:
                        grad.add_(delta, alpha=hp.weight_decay)
                    delta.add_(grad, alpha=-hp.lr)
                    if hp.norm_constraint != float("inf"):
                        delta.clamp_(-hp.norm_constraint, hp.norm_constraint)
                loss_value = loss.item()
                if prev is not None and abs(loss_value - prev) <= hp.early_stop_delta \
                        and loss_value <= hp.early_stop_loss:
                    break
                prev = loss_value
        return ShardUpdate(delta=delta.detach(), steps=steps, loss=loss_value)
