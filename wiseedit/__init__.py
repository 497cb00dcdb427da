"""wiseedit: lifelong knowledge editing (WISE, RECIPE and baselines) for Hugging Face causal LMs.

The library API, also what the ``wiseedit`` command runs::

    import wiseedit
    result = wiseedit.edit("path/to/model", "edits.jsonl", method="wise")   # writes a delta directory
    model = wiseedit.load("path/to/model", result.delta.path)               # generate() is edited
    model.wiseedit.summary()

Names are imported on first use, so ``import wiseedit`` (and ``wiseedit --help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module, metadata
from types import MappingProxyType

try:
    __version__ = metadata.version("wiseedit")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = MappingProxyType({
    "load": "wiseedit.api",
    "edit": "wiseedit.api",
    "merge_shards": "wiseedit.api",
    "train_recipe": "wiseedit.api",
    "TrainingRun": "wiseedit.api",
    "EditResult": "wiseedit.api",
    "EditOutcome": "wiseedit.api",
    "MergeResult": "wiseedit.api",
    "evaluate": "wiseedit.evaluation.runner",
    "EvalConfig": "wiseedit.evaluation.runner",
    "evaluate_delta": "wiseedit.evaluation.audit",
    "EvalReport": "wiseedit.evaluation.report",
    "load_edited": "wiseedit.session",
    "EditedModel": "wiseedit.session",
    "EditRecord": "wiseedit.edits",
    "read_edits": "wiseedit.edits",
    "WiseEditError": "wiseedit.errors",
    "BadInputError": "wiseedit.errors",
    "CheckFailed": "wiseedit.errors",
})

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'wiseedit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
