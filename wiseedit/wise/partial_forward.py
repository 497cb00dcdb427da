"""A forward that ends where the caller has what it needs.

WISE records activations with hooks: the edited module's input (for keys, thresholds, the centre,
the activation scale) or the arguments of the layers above it (the fast path). Whatever the model
computes past the last hook it needs is thrown away, so the forward is ended there: what it computed
up to that point is exactly what a full forward computes (same operations, same order).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


class _Reached(Exception):
    """Raised by the stopping hook: the forward has reached the module it was to end at."""


def run_until(forward: Callable[[], object], module: nn.Module, after: bool = False) -> None:
    """Call `forward()` (a forward of a model containing `module`) and end it when it reaches
    `module`: before `module` runs, or just after with `after`. Hooks registered on `module`
    before this call have run by then (hooks run in the order they were registered)."""

    def stop(*_):
        raise _Reached

    handle = module.register_forward_hook(stop) if after else module.register_forward_pre_hook(stop)
    try:
        forward()
    except _Reached:
        pass
    finally:
        handle.remove()
