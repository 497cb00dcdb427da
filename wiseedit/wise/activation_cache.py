"""Exact speed-up of WISE training: the layers below the edited one run once per edit, not per step.

During an edit only the side memory changes, and everything below the edited module is frozen and
sees the same tokens at every step, so its output is a constant. We run the model once, keep the
output of the decoder layer just below the edited one, and while the optimisation runs, swap the
lower layers for stand-ins that return that kept output. Each step then costs the embeddings, the
edited layer and the layers above it: roughly (layers above + 1) / all layers of a full forward.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


def decoder_layers_of(model: nn.Module, module_path: str) -> tuple[nn.ModuleList, int]:
    """The ModuleList of decoder layers that contains `module_path`, and the index of its layer.

    Found from the path itself ("model.layers.27.mlp.down_proj" -> (model.layers, 27)), so no
    architecture table is needed.
    """
    parts = module_path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i].isdigit():
            container = model.get_submodule(".".join(parts[:i]))
            if isinstance(container, nn.ModuleList):
                return container, int(parts[i])
    raise ValueError(f"{module_path!r} is not inside a list of decoder layers")


class _Replay(nn.Module):
    """Stands in for a frozen decoder layer: returns the output recorded for this batch."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs):
        return self.output


@contextmanager
def replay_lower_layers(layers: nn.ModuleList, index: int, run) -> Iterator[None]:
    """Call `run()` once recording the output of layer ``index - 1``; inside the block, layers
    ``0 .. index-1`` return that output instead of computing (only the last one's output is used:
    each decoder layer's input is the previous one's output)."""
    if index == 0:
        yield
        return
    recorded = []
    handle = layers[index - 1].register_forward_hook(lambda mod, args, out: recorded.append(out))
    try:
        run()
    finally:
        handle.remove()
    originals = [layers[i] for i in range(index)]
    replay = _Replay(recorded[0])
    for i in range(index):
        layers[i] = replay
    try:
        yield
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer
