"""An exponential moving average of RECIPE's weights over training steps (Polyak averaging).

RECIPE trains at a constant learning rate with no schedule (the paper), so the weights keep moving
around a region rather than settling: on the world model, the Rel of checkpoints 500 steps apart
differed by up to .03, and the mean of two or three checkpoints' weights recalled more than any of them
(docs/recipe.md, "Averaged weights"). The average of every step's weights, decayed, is what a
checkpoint then offers for inference; the trained weights themselves go on training, unchanged by it.

After update t (t = 1, 2, ...) the average is ``a_t = d_t a_{t-1} + (1 - d_t) w_t`` with
``d_t = (decay - decay^t) / (1 - decay^t)``: the bias-corrected average (as Adam corrects its moments),
``sum_s decay^(t-s) w_s / sum_s decay^(t-s)`` over the updates s = 1..t, so the initial weights never
count and the first steps weigh no more than later ones; it spans about ``1 / (1 - decay)`` updates
(1000 for 0.999) once the run is longer than that. Integer buffers (e.g. an encoder's position ids) are
copied, not averaged.
"""

from __future__ import annotations

import torch

#: Prefix of the trained (not averaged) weights in a checkpoint's training state: resuming needs them.
TRAINED_PREFIX = "trained."


def trained_weights(training_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained weights kept in a checkpoint's training state, by parameter name (empty when its
    run did not average)."""
    return {k[len(TRAINED_PREFIX):]: v for k, v in training_state.items() if k.startswith(TRAINED_PREFIX)}


class WeightAverage:
    """The moving average of `module`'s state (floating tensors; others copied) with decay `decay` in
    [0, 1) (``RecipeConfig.ema_decay``, checked there), starting from the module's current state (a
    resumed run's module holds the average so far)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.average = {name: value.detach().clone() for name, value in module.state_dict().items()}

    def decay_at(self, updates: int) -> float:
        """The decay applied by update number `updates` (1 for the first)."""
        return (self.decay - self.decay ** updates) / (1.0 - self.decay ** updates)

    @torch.no_grad()
    def update(self, module: torch.nn.Module, updates: int) -> None:
        """Fold in `module`'s weights after its optimizer's update number `updates`."""
        weight = 1.0 - self.decay_at(updates)
        for name, value in module.state_dict().items():
            kept = self.average[name]
            if kept.is_floating_point():
                kept.lerp_(value.detach().to(kept.dtype), weight)
            else:
                kept.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, by the module's parameter names (load them with ``load_state_dict``)."""
        return self.average
