"""The shape every method's settings take: a dataclass that checks itself.

A method's config (``WiseConfig``, ``GraceConfig``, ``FineTuneConfig``, ``RecipeEditConfig``) subclasses
:class:`MethodConfig`: each field carries its default and what it means, :meth:`MethodConfig.problem`
names the first field of the wrong type or out of range, and constructing a config runs that check, so
no method ever holds settings that were not checked. :meth:`MethodConfig.from_options` is what
``EditingMethod.check_options`` and ``create`` call on the user's options: unknown keys and bad values
raise :class:`~wiseedit.errors.BadInputError` with one sentence, before any model is loaded.

The settings are saved in a delta's ``method_settings`` (:meth:`MethodConfig.to_dict`), apart from the
method's state (counters, memories, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from wiseedit.errors import BadInputError

C = TypeVar("C", bound="MethodConfig")


class MethodConfig:
    """Base of the methods' settings dataclasses (subclasses are ``@dataclass``)."""

    #: How messages name the method ("WISE", "GRACE", ...).
    label: ClassVar[str] = "method"
    #: Named sets of field values an option ``preset=<name>`` starts from, for configs without a
    #: ``preset`` field of their own; explicit options override them.
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})

    def __post_init__(self) -> None:
        """Refuse (BadInputError, one sentence) the first field of the wrong type or out of range."""
        problem = self.problem()
        if problem:
            raise BadInputError(f"invalid {self.label} option: {problem}")

    def problem(self) -> str | None:
        """What is wrong with the first bad field ("<name> must be ..., got <value>"), or None. What
        needs the model (a layer's upper bound, a module's existence) is checked when it is loaded."""
        return None

    @classmethod
    def from_options(cls: type[C], options: Mapping[str, Any] | None) -> C:
        """The defaults, then ``preset`` (when the config has :attr:`presets`), then `options`;
        BadInputError for an unknown key, an unknown preset or a bad value."""
        options = dict(options or {})
        names = [f.name for f in fields(cls)]
        base: dict[str, Any] = {}
        if "preset" not in names and "preset" in options:
            preset = options.pop("preset")
            if not isinstance(preset, str) or preset not in cls.presets:
                raise BadInputError(f"unknown {cls.label} preset {preset!r}; choose "
                                    f"{', '.join(repr(p) for p in cls.presets)}")
            base = dict(cls.presets[preset])
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise BadInputError(f"unknown {cls.label} option(s): {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(names))}")
        return cls(**{**base, **options})

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (what a delta saves as ``method_settings``)."""
        return asdict(self)  # type: ignore[call-overload]  (subclasses are dataclasses)
