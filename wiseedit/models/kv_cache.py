"""Telling a prefill from a decode step, whatever transformers calls the KV cache.

Hooks that must keep a prefill's decision while ``generate`` decodes (WISE's router, RECIPE's prompt
injector, GRACE's codebook) need to know whether a forward call extends a filled cache. transformers
has passed that cache as ``past_key_values`` and, from 5.24, as ``cache`` (its outputs renamed the
field likewise). These helpers find it by what it is, a :class:`~transformers.cache_utils.Cache`, not
by its keyword, so a rename does not silently turn every decode step into a new prompt.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from transformers.cache_utils import Cache

# keywords under which a legacy tuple-of-tuples cache may come (only a Cache object is found by type)
_LEGACY_NAMES = ("past_key_values", "cache", "past")


def call_cache(kwargs: Mapping[str, Any]) -> Any:
    """The KV cache a forward call was given (by keyword), or None."""
    for value in kwargs.values():
        if isinstance(value, Cache):
            return value
    for name in _LEGACY_NAMES:
        value = kwargs.get(name)
        if isinstance(value, (tuple, list)) and value:
            return value
    return None


def cached_length(cache: Any) -> int:
    """How many positions `cache` already holds (0 for None or an empty cache)."""
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    return int(cache[0][0].shape[-2]) if len(cache) else 0  # legacy: (layers, (key (B, h, T, d), value))


def extends_cache(kwargs: Mapping[str, Any]) -> bool:
    """True when a forward call continues a filled KV cache (a decode step), False for a prefill."""
    return cached_length(call_cache(kwargs)) > 0


def output_cache(output: Any) -> Any:
    """The KV cache a model output carries (``cache`` from transformers 5.24, ``past_key_values``
    before; the new name first, as the old one is a deprecated alias that warns)."""
    for name in ("cache", "past_key_values"):
        cache = getattr(output, name, None)
        if cache is not None:
            return cache
    return None


def cache_keyword(model) -> str:
    """The keyword under which `model`'s forward takes a KV cache: ``cache`` from transformers 5.24
    (``past_key_values`` is deprecated there, to be removed in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
