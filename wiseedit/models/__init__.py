"""Base models: resolve a name (folder, alias, cached hub id), load it, find its editable module, hash it."""

from wiseedit.models.aliases import BUILTIN_ALIASES, HUB_ALIASES, builtin_path, hub_id_for, known_aliases
from wiseedit.models.fingerprint import base_fingerprint
from wiseedit.models.loading import DType, LoadedModel, load_base
from wiseedit.models.modules import get_module, normalize_path, set_module
from wiseedit.models.presets import (
    WISE_LLAMA3_8B,
    ArchPreset,
    WiseReference,
    default_layer,
    edited_module_path,
    num_layers,
    preset_for,
    supported_model_types,
)
from wiseedit.models.resolve import ModelSource, resolve_model

__all__ = [
    "BUILTIN_ALIASES", "HUB_ALIASES", "WISE_LLAMA3_8B", "ArchPreset", "DType", "LoadedModel", "ModelSource",
    "WiseReference", "base_fingerprint", "builtin_path", "default_layer", "edited_module_path", "get_module",
    "hub_id_for", "known_aliases", "load_base", "normalize_path", "num_layers", "preset_for", "resolve_model",
    "set_module", "supported_model_types",
]
