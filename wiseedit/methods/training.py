"""Helpers for methods that train a tensor against a frozen model."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Turn off gradients for every parameter of `model` (so backward stops at the trained tensor) and
    give each its previous `requires_grad` back afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
