"""Input-side preconditioning of a WISE step: the tokens of an edit's own text learn apart.

The delta's gradient is ``G = P^T X`` (X: the edited module's inputs at the batch's tokens, P: the
loss's gradient at their outputs), and a plain SGD step moves the output at token j by
``lr * sum_i P_i (x_i . x_j)``. Two tokens with nearly parallel inputs move together, and their
*difference* at the rate of the cosine's distance from 1. A target in which a token repeats
(``" w|o|o|d"``: the first "o" must give "o", the second "d") on a model whose layers below the memory
mix little context (tiny random GPT-J: the two "o" inputs have cosine .996) is then not learned in
any number of steps: what one "o" gains, the other loses.

The step here raises the slow directions *of the edits' own texts* (X_b: the inputs at the tokens of
the rows without template context, the bare edit prompts with their targets; K = X_b X_b^T / H^2, H^2
their mean squared norm) to the rate of a lone token: an eigenvalue k < 1 of K gets the gain
``min(1 / k, MAX_GAIN)``, every other direction keeps SGD's step:

    G -> G + (G X_b^T / H^2) V diag((gain - 1) / k) V^T X_b,     K = V diag(k) V^T

Directions that tell a template's context from another's are not in X_b's span and keep SGD's step:
raising those too (X over every row) learned the repeated tokens but lowered the world suite's Gen
(.988 -> .973 at T = 10), since SGD's shared step over the templates is what generalises.
"""

from __future__ import annotations

import torch

#: The most a direction's rate is raised; directions of eigenvalue below 1 / MAX_GAIN^2 (the same
#: input to float precision) keep SGD's.
MAX_GAIN = 100.0


class InputPreconditioner:
    """The map of the module docstring for the inputs X_b (M, in) of an edit's bare rows."""

    def __init__(self, inputs: torch.Tensor):
        x = inputs.float()                                         # (M, in)
        h2 = x.pow(2).sum(1).mean().clamp_min(1e-12)               # H^2
        k, v = torch.linalg.eigh(x @ x.t() / h2)                   # K = V diag(k) V^T
        safe = k.clamp_min(1e-12)
        gain = (1.0 / safe).clamp(1.0, MAX_GAIN)
        gain = torch.where(k > MAX_GAIN ** -2, gain, torch.ones_like(gain))
        self.x_over_h2 = x / h2                                    # (M, in)
        self.extra = (v * ((gain - 1) / safe)) @ (v.t() @ x)       # V diag((gain-1)/k) V^T X_b (M, in)

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        """(out, in) gradient -> preconditioned gradient (out, in), in place."""
        return grad.addmm_(grad @ self.x_over_h2.t(), self.extra)

    def lift(self, inputs: torch.Tensor) -> torch.Tensor:
        """Inputs X (M, in) -> X A (M, in), A the map's matrix: ``P^T (X A)`` is the preconditioned
        gradient of a loss whose gradient is ``P^T X`` (one product per step, none added)."""
        return self(inputs.clone())
