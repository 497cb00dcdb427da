"""Where a model's tensors live: the device its inputs must be moved to before a forward pass."""

from __future__ import annotations

import torch


def model_device(model) -> torch.device:
    """Where `model`'s inputs must go: its ``device`` attribute, else that of its first parameter."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def input_device(model) -> torch.device:
    """The device of `model`'s input embeddings: where token ids go when the model is split over several
    devices (``device_map``) and ``model.device`` names another one."""
    return model.get_input_embeddings().weight.device
