"""Find and replace submodules by dotted path (``model.layers.27.mlp.down_proj``), with useful errors.

Paths are resolved through ``nn.Module.get_submodule``: no ``eval``, no string-built attribute access.
"""

from __future__ import annotations

import difflib
import re

from torch import nn

from wiseedit.errors import BadInputError

_MAX_CANDIDATES = 4
_INDEX = re.compile(r"\[(\d+)\]")


def normalize_path(path: str) -> str:
    """The canonical dotted form of a module path: ``model.layers[27].mlp`` -> ``model.layers.27.mlp``."""
    return _INDEX.sub(r".\1", path.strip()).strip(".")


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule of `model` at `path`; BadInputError naming close valid paths if there is none."""
    path = normalize_path(path)
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise BadInputError(_missing_message(model, path)) from None


def is_conv1d(module: nn.Module) -> bool:
    """True for GPT-2-style ``Conv1D``, whose weight is stored transposed: (in_features, out_features)."""
    return type(module).__name__ == "Conv1D"


def get_weight_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at `path`, refused (BadInputError) unless it holds a weight matrix as an
    ``nn.Linear`` or GPT-2's ``Conv1D`` does: what WISE, GRACE and FT-L edit."""
    module = get_module(model, path)
    if not (isinstance(module, nn.Linear) or is_conv1d(module)):
        kind = type(module).__name__
        raise BadInputError(f"module '{normalize_path(path)}' is a {kind}, not a layer with a weight matrix "
                            f"(nn.Linear or Conv1D, such as an FFN's down_proj); pick one of those")
    return module


def set_module(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Replace the submodule at `path` by `new` and return the module it replaced.

    Only an existing submodule can be replaced, so a typo raises instead of silently adding an attribute.
    """
    if not isinstance(new, nn.Module):
        raise TypeError(f"set_module needs an nn.Module, got {type(new).__name__}")
    path = normalize_path(path)
    old = get_module(model, path)
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    # setattr works for ModuleList/Sequential too: their children are registered under "0", "1", ...
    setattr(parent, leaf, new)
    return old


def _missing_message(model: nn.Module, path: str) -> str:
    names = [name for name, _ in model.named_modules() if name]
    leaf = path.rpartition(".")[2]
    candidates = [name for name in names if name.rpartition(".")[2] == leaf]
    if not candidates:
        candidates = difflib.get_close_matches(path, names, n=_MAX_CANDIDATES, cutoff=0.5)
    hint = f": did you mean {', '.join(_spread(candidates))}?" if candidates else (
        f": its top-level modules are {', '.join(n for n in names if '.' not in n)}")
    return f"module '{path}' does not exist in this {type(model).__name__}{hint}"


def _spread(candidates: list[str]) -> list[str]:
    """At most a few candidates, spread over the list (first, ..., last) rather than its head only."""
    if len(candidates) <= _MAX_CANDIDATES:
        return candidates
    step = (len(candidates) - 1) / (_MAX_CANDIDATES - 1)
    return [candidates[round(i * step)] for i in range(_MAX_CANDIDATES)] + ["..."]
