"""The merged form: all of a WISE delta's memories consolidated into one, baked into the weights.

``W_edited = W_main + delta`` for the edited module, with no router: the result is a plain checkpoint
that any ``transformers`` loads, at the price of the routing (every input now goes through the merged
side memory), which is why the exporter measures Loc before writing it.
"""

from __future__ import annotations

import torch
from torch import nn

from wiseedit.errors import BadInputError, CheckFailed, WiseEditError
from wiseedit.export.measure import ExportMetrics
from wiseedit.models.modules import is_conv1d
from wiseedit.wise.merging import merge

#: Methods whose delta can be merged into the weights.
MERGEABLE = ("wise", "wise-retrieve")
#: WISE-Retrieve keeps its memories apart; to bake them they are merged with TIES (the paper's choice).
RETRIEVE_MERGE = "ties"


class LocalityTooLow(CheckFailed):
    """The merged model's Loc is below the bar: nothing was written (exit 1). `metrics` has the figures."""

    def __init__(self, message: str, metrics: ExportMetrics, *, cli: str | None = None):
        super().__init__(message, cli=cli)
        self.metrics = metrics


def check_mergeable(method_name: str) -> None:
    """Refuse (BadInputError) a delta whose method has no weight delta to bake."""
    if method_name not in MERGEABLE:
        none = (f"a WISE side memory into the weights; a {method_name} delta has none to bake (only "
                f"{', '.join(MERGEABLE)} deltas do): export it self-contained instead")
        raise BadInputError(f"merged=True bakes {none} (merged=False)", cli=f"--merged bakes {none} (drop --merged)")


def consolidated_delta(method) -> tuple[torch.Tensor, dict]:
    """One (out, in) float32 delta holding all the memories of a restored WISE `method`, and a note of
    how it was made.

    WISE-Merge: the pending shards and the current one are merged into the consolidated memory with the
    delta's own merge algorithm (``method.merge_pending()``). WISE-Retrieve: the same, then all its
    memories are merged with TIES, equal weights. This changes the in-memory `method` (a copy restored
    from the delta directory, which is only ever read), never the saved delta.
    """
    shards = method.merge_pending()
    memories = method.merged
    if not memories:
        raise BadInputError("the delta holds no trained memory: there is nothing to merge into the weights")
    note = {"algorithm": method.config.merge_algorithm, "shards_merged": shards, "memories": len(memories)}
    if len(memories) == 1:
        return memories[0].delta, note
    k = len(memories)
    delta = merge(RETRIEVE_MERGE, [m.delta for m in memories], [1.0 / k] * k, method.config.density)
    return delta, note | {"memories_algorithm": RETRIEVE_MERGE, "density": method.config.density}


def merged_weight(module: nn.Module, delta: torch.Tensor) -> torch.Tensor:
    """``W_main + delta`` in the module's own layout and dtype (a new tensor; the module is untouched).

    `delta` is (out, in) like ``nn.Linear``; GPT-2's Conv1D stores its weight (in, out), so the delta
    is transposed for it. The sum is taken in float32 and rounded once to the weight's dtype. Raises
    WiseEditError if the result holds NaN or inf (peft's ``safe_merge`` habit: check before replacing).
    """
    weight = module.weight.detach()
    oriented = delta.t() if is_conv1d(module) else delta                   # weight's layout
    if tuple(oriented.shape) != tuple(weight.shape):
        raise WiseEditError(f"the merged delta has shape {tuple(delta.shape)}, which does not fit the "
                            f"edited module's weight {tuple(weight.shape)}")
    merged = (weight.float() + oriented.to(weight.device, torch.float32)).to(weight.dtype)
    if not torch.isfinite(merged).all():
        nan = (f"merging the delta gives non-finite weights (NaN or inf) in {weight.dtype}; nothing was written: "
               "export it self-contained instead")
        raise WiseEditError(f"{nan} (merged=False)", cli=f"{nan} (drop --merged)")
    return merged


@torch.no_grad()
def bake(module: nn.Module, delta: torch.Tensor) -> None:
    """Replace the module's weight by :func:`merged_weight` (checked first, so a failure changes nothing)."""
    if module.weight.device.type == "meta":
        spread = ("the edited module's weight is offloaded (device_map spread the model); load it on one device "
                  "to export it merged")
        raise BadInputError(f"{spread}, e.g. device='cpu'", cli=f"{spread}, e.g. --device cpu")
    module.weight.copy_(merged_weight(module, delta))
