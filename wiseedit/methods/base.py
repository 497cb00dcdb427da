"""The interface every editing method implements, so the CLI, the evaluator and the artifact code
treat WISE, RECIPE and the baselines alike.

Life cycle: ``create`` attaches a fresh method to a loaded model; ``apply`` teaches it edits, one after
another (the lifelong setting); ``state`` returns everything needed to continue later (the settings,
a JSON-able state and named tensors, written to a delta directory); ``restore`` rebuilds the attached
method from a state on the same base model; ``detach`` gives the model its base behaviour back.

Each method keeps its settings in a config dataclass (:class:`~wiseedit.methods.config.MethodConfig`,
named by :attr:`EditingMethod.config_class`), which checks the user's options before any model is
loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import ClassVar

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.config import MethodConfig

#: Called after each edit with (number done, number in total).
ProgressFn = Callable[[int, int], None]


@dataclass
class MethodState:
    """A method's saved form. `settings` are the options it was created with (its config dataclass as a
    dict; a delta's ``method_settings``); `config` is the JSON-able state that editing changes
    (counters, templates, memories' bookkeeping; ``method_state``); `tensors` are saved as safetensors
    (contiguous, on CPU is not required: the writer moves them).

    `settings` is None for a delta written before settings were saved apart: its `config` then holds
    them too, in the method's older layout, and the method's ``restore`` takes them from there.

    `edits` are the delta's edits in the order of its log, as the method was taught them (prompt through
    the delta's chat template, target, id): a method whose :attr:`~EditingMethod.restores_from_edits` is
    true keeps only their positions in `config`, and is given them back here when it is restored."""

    config: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    folder: Path | None = None  # the delta directory it was read from (relative paths in it resolve there)
    settings: dict | None = None
    edits: list[EditRecord] | None = None  # None: not read from a delta, or the method does not need them


class EditingMethod(ABC):
    """A knowledge-editing method attached to one model and its tokenizer."""

    name: ClassVar[str]
    #: The settings dataclass :meth:`create` builds from its options (None: the method takes none).
    config_class: ClassVar[type[MethodConfig] | None] = None
    #: True: :meth:`state` refers to the edits by their position in the delta's edit log instead of
    #: copying their texts, and :meth:`restore` reads them back from :attr:`MethodState.edits`.
    restores_from_edits: ClassVar[bool] = False

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._query_mask: torch.Tensor | None = None

    @classmethod
    @abstractmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> EditingMethod:
        """Attach a fresh method (no edits yet) to `model`; `options` override its defaults."""

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse (BadInputError, one sentence) `options` that :meth:`create` would not accept: unknown
        keys, values of the wrong type or out of range (:meth:`MethodConfig.from_options
        <wiseedit.methods.config.MethodConfig.from_options>` of :attr:`config_class`). Called before any
        model is loaded, so that a typo costs nothing. A method without a config accepts none."""
        if cls.config_class is not None:
            cls.config_class.from_options(options)
        elif options:
            raise BadInputError(f"method {cls.name} takes no options, got {', '.join(sorted(options))}")

    @classmethod
    @abstractmethod
    def restore(cls, model, tokenizer, state: MethodState) -> EditingMethod:
        """Attach a method saved by :meth:`state` to `model` (the same base it was made on)."""

    @abstractmethod
    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        """Teach the model `edits`, in order, on top of everything taught before."""

    @abstractmethod
    def state(self) -> MethodState:
        """Everything needed to reload this method and to continue editing exactly where it is."""

    @abstractmethod
    def detach(self) -> None:
        """Remove the method from the model, which then behaves exactly as the base model."""

    def fresh(self) -> EditingMethod | None:
        """A new method attached to the same model, with this one's settings and no edits, that reuses
        what this one loaded (call it once this one is detached); None where nothing is worth reusing,
        and the caller calls :meth:`create`. The evaluator uses it between blocks."""
        return None

    @property
    def seed(self) -> int | None:
        """The seed this method's randomness derives from (recorded in the delta), or None if it draws
        nothing at random."""
        return None

    def summary(self) -> dict:
        """A short JSON-able description of what the method holds (shown by ``wiseedit load``)."""
        return {"method": self.name}

    def settings(self) -> dict:
        """Every setting this method runs with, after its defaults and presets were applied, as JSON
        (what ``results.json`` records): its dataclass ``config``, or its ``options`` dict, with the
        edited module resolved (a ``module`` of None becomes the path :meth:`summary` reports).
        Methods that keep their settings elsewhere override it."""
        config = getattr(self, "config", None)
        values = asdict(config) if is_dataclass(config) else dict(getattr(self, "options", None) or {})
        module = self.summary().get("module")
        if module is not None:
            values["module"] = module
        return json.loads(json.dumps(values, default=str))  # tuples -> lists, paths -> strings

    @contextmanager
    def query_tokens(self, mask: torch.Tensor) -> Iterator[None]:
        """Within this block, methods that look at the input to decide (WISE's router, RECIPE's
        retriever) look only at the tokens where `mask` (batch, seq) is true, e.g. the prompt part of a
        teacher-forced prompt+answer input. Outside it they use every non-padding token."""
        previous, self._query_mask = self._query_mask, mask
        try:
            yield
        finally:
            self._query_mask = previous
