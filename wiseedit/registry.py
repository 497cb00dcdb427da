"""The editing methods, by the names the CLI and the delta config spell them: one table, in one place.

Each entry names a method and the function that imports its class, so that ``wiseedit --help``
(which lists the names) does not import torch; :func:`method_class` checks that the class it gets
carries the name it is registered under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wiseedit.errors import BadInputError

if TYPE_CHECKING:  # importing the base class would import torch: the CLI reads the names without it
    from wiseedit.methods.base import EditingMethod


def _wise() -> type[EditingMethod]:
    from wiseedit.wise.method import WiseMethod

    return WiseMethod


def _wise_retrieve() -> type[EditingMethod]:
    from wiseedit.wise.method import WiseRetrieveMethod

    return WiseRetrieveMethod


def _recipe() -> type[EditingMethod]:
    from wiseedit.recipe.method import RecipeMethod

    return RecipeMethod


def _grace() -> type[EditingMethod]:
    from wiseedit.baselines.grace import GraceMethod

    return GraceMethod


def _ft_l() -> type[EditingMethod]:
    from wiseedit.baselines.ft_l import FineTuneMethod

    return FineTuneMethod


def _none() -> type[EditingMethod]:
    from wiseedit.methods.none import NoEdit

    return NoEdit


@dataclass(frozen=True)
class Registered:
    """One editing method: its name and how to import its class."""

    name: str
    load: Callable[[], type[EditingMethod]]


#: Every method, in the order help texts list them (a tuple: nothing registers into it at run time).
METHODS: tuple[Registered, ...] = (
    Registered("wise", _wise),
    Registered("wise-retrieve", _wise_retrieve),
    Registered("recipe", _recipe),
    Registered("grace", _grace),
    Registered("ft-l", _ft_l),
    Registered("none", _none),
)

METHOD_NAMES: tuple[str, ...] = tuple(m.name for m in METHODS)

#: The names as a type, for typed signatures and the CLI's choices (built from :data:`METHODS`).
MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]


def method_class(name: str) -> type[EditingMethod]:
    """The class implementing method `name` (one of :data:`METHOD_NAMES`)."""
    for method in METHODS:
        if method.name == name:
            cls = method.load()
            if cls.name != name:  # a class registered under another name would save deltas it cannot read
                raise AssertionError(f"{cls.__name__} is registered as {name!r} but names itself {cls.name!r}")
            return cls
    raise BadInputError(f"unknown method {name!r}; choose one of: {', '.join(METHOD_NAMES)}")
