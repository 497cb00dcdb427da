"""Method names as the CLI and the delta config spell them, mapped to their classes.

Imports are lazy so that ``wiseedit --help`` does not import every method's dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Literal

from wiseedit.errors import BadInputError

if TYPE_CHECKING:  # importing the base class would import torch: the CLI reads the names without it
    from wiseedit.methods.base import EditingMethod

# name -> "module:Class"; a tuple, not a dict, so nothing can register into it at run time
_METHODS: tuple[tuple[str, str], ...] = (
    ("wise", "wiseedit.wise.method:WiseMethod"),
    ("wise-retrieve", "wiseedit.wise.method:WiseRetrieveMethod"),
    ("recipe", "wiseedit.recipe.method:RecipeMethod"),
    ("grace", "wiseedit.baselines.grace:GraceMethod"),
    ("ft-l", "wiseedit.baselines.ft_l:FineTuneMethod"),
    ("none", "wiseedit.methods.none:NoEdit"),
)

METHOD_NAMES: tuple[str, ...] = tuple(name for name, _ in _METHODS)

#: The same names as a type, for typed signatures and the CLI's choices (kept equal to METHOD_NAMES).
MethodName = Literal["wise", "wise-retrieve", "recipe", "grace", "ft-l", "none"]


def method_class(name: str) -> type[EditingMethod]:
    """The class implementing method `name` (one of :data:`METHOD_NAMES`)."""
    for known, target in _METHODS:
        if known == name:
            module, cls = target.split(":")
            return getattr(import_module(module), cls)
    raise BadInputError(f"unknown method {name!r}; choose one of: {', '.join(METHOD_NAMES)}")
