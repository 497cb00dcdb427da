"""What GRACE and FT-L share as methods: one edited module, found from the config's ``module`` /
``layer`` (or, on restore, the exact path saved), edits applied one at a time, and the saved form
(settings apart from the state, which is the module path and the number of edits)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import fields

import torch

from wiseedit.baselines.common import resolve_module
from wiseedit.edits.record import EditRecord
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.methods.config import MethodConfig

STATE_FORMAT = 1


class SingleModuleMethod(EditingMethod):
    """An editing method that changes one module; subclasses set ``config_class`` and implement
    :meth:`_edit`, :meth:`_tensors` and :meth:`_from_saved`."""

    def __init__(self, model, tokenizer, config: MethodConfig, num_edits: int = 0, path: str | None = None):
        super().__init__(model, tokenizer)
        self.config = config
        # a restored method uses the exact path it was saved with, whatever the presets say today
        self.path, self.module = resolve_module(model, path) if path else resolve_module(
            model, config.module, config.layer)
        self.num_edits = num_edits
        self.attached = True  # False once detached: editing then needs a new method

    @classmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> SingleModuleMethod:
        return cls._from_saved(model, tokenizer, cls.config_class.from_options(options), None, 0, None)

    @classmethod
    def restore(cls, model, tokenizer, state: MethodState) -> SingleModuleMethod:
        saved = dict(state.config)
        if state.settings is not None:
            settings = state.settings
        else:  # a delta saved before settings were kept apart: they sat beside the counters
            names = {f.name for f in fields(cls.config_class)}
            settings = {key: value for key, value in saved.items() if key in names}
        config = cls.config_class(**settings)
        return cls._from_saved(model, tokenizer, config, state.tensors, int(saved["num_edits"]),
                               saved["module_path"])

    def state(self) -> MethodState:
        saved = {"format": STATE_FORMAT, "module_path": self.path, "num_edits": self.num_edits}
        return MethodState(config=saved, tensors=self._tensors(), settings=self.config.to_dict())

    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        if not self.attached:
            raise RuntimeError(f"this {self.config_class.label} method was detached: create or restore a new one "
                               "to edit")
        for i, edit in enumerate(edits):
            self._edit(edit)
            self.num_edits += 1
            if progress:
                progress(i + 1, len(edits))

    @classmethod
    @abstractmethod
    def _from_saved(cls, model, tokenizer, config: MethodConfig, tensors: dict[str, torch.Tensor] | None,
                    num_edits: int, path: str | None) -> SingleModuleMethod:
        """The method over `model` with `config`, and the saved `tensors`, `num_edits` and module `path`
        (None for each: a fresh method at the config's module)."""

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """What :meth:`state` saves as tensors."""

    @abstractmethod
    def _edit(self, edit: EditRecord) -> None:
        """Teach the model one edit."""
