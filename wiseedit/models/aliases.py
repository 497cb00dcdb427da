"""Short model names: aliases for Hugging Face ids, and the models that ship inside wiseedit.

Both tables are read-only mappings, so no caller can add an alias behind everyone else's back.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Mapping

HUB_ALIASES: Mapping[str, str] = MappingProxyType({
    "llama2": "meta-llama/Llama-2-7b-hf",
    "llama2-chat": "meta-llama/Llama-2-7b-chat-hf",
    "llama3": "meta-llama/Meta-Llama-3-8B",
    "llama3.1": "meta-llama/Llama-3.1-8B",
    "llama3.2-3b": "meta-llama/Llama-3.2-3B",
    "mistral": "mistralai/Mistral-7B-v0.1",
    "qwen2.5": "Qwen/Qwen2.5-7B",
    "gpt-j": "EleutherAI/gpt-j-6b",
    "gpt2-xl": "openai-community/gpt2-xl",
    "gpt2": "openai-community/gpt2",
})
"""Alias -> Hugging Face id of the models the paper and the reference presets use."""

BUILTIN_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "world": ("world", "assets", "model"),
    "world-xl": ("world", "assets", "model-xl"),
})
"""Alias -> folder of a built-in model, relative to the ``wiseedit`` package (a Hugging Face folder)."""

# The package root, found from this file rather than through importlib.resources so that resolving a
# name never imports wiseedit.world (and whatever that package grows to import).
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def known_aliases() -> tuple[str, ...]:
    """Every alias, built-in ones first, in a stable order (for help texts and error messages)."""
    return tuple(BUILTIN_ALIASES) + tuple(HUB_ALIASES)


def builtin_path(alias: str) -> Path | None:
    """The folder of built-in model `alias`, or None if `alias` names no built-in model.

    The folder may not exist (e.g. the world model has not been trained yet); the caller checks.
    """
    parts = BUILTIN_ALIASES.get(alias.lower())
    return _PACKAGE_ROOT.joinpath(*parts) if parts is not None else None


def hub_id_for(alias: str) -> str | None:
    """The Hugging Face id behind `alias` (case-insensitive), or None if it is not an alias."""
    return HUB_ALIASES.get(alias.lower())
