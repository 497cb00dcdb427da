"""Per-architecture facts WISE needs: which module is the FFN value matrix, its activation, which layer.

Keyed by ``config.model_type`` only, never by the model's name (a fine-tune keeps its architecture but
not its name). Where one model_type covers models the reference tuned differently (Llama-2 and Llama-3
are both "llama"), the preset holds one rule and the other setting stays reachable with --layer and the
method's own flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Mapping

from wiseedit.errors import BadInputError
from wiseedit.methods.option_checks import placement_problem
from wiseedit.models.modules import normalize_path


@dataclass(frozen=True)
class WiseReference:
    """The reference code's WISE hyper-parameters for one architecture (wise.md §3/§4)."""

    act_ratio: float  # threshold = act_ratio x the shard's minimum edit score
    n_iter: int  # SGD steps per edit
    alpha: float  # upper bound of the irrelevant row's score
    beta: float  # lower bound of the edit rows' scores
    gamma: float  # margin between edit and irrelevant scores


@dataclass(frozen=True)
class ArchPreset:
    """How to find and edit the FFN value matrix of one architecture (one ``config.model_type``)."""

    model_type: str
    value_module: str  # path of layer i's FFN value module, "{i}" = layer index
    depth: Fraction  # default layer = round(depth x number of layers), kept off layers 0, 1 and the last
    activation: str  # the FFN activation if the config does not name it
    activation_attrs: tuple[str, ...]  # config attributes that name the activation, tried in order
    wise: WiseReference  # reference WISE hyper-parameters

    def module_path(self, layer: int) -> str:
        """The value module of `layer` (not range-checked: see :func:`edited_module_path`)."""
        return self.value_module.format(i=layer)

    def activation_of(self, config: Any) -> str:
        """The activation name of `config` (e.g. ``silu``, ``gelu_new``), as ``transformers.ACT2FN`` keys it."""
        for attr in self.activation_attrs:
            if isinstance(value := getattr(config, attr, None), str):
                return value
        return self.activation


_LLAMA2 = WiseReference(act_ratio=0.88, n_iter=70, alpha=5.0, beta=20.0, gamma=10.0)
WISE_LLAMA3_8B = WiseReference(act_ratio=0.5, n_iter=30, alpha=5.0, beta=20.0, gamma=10.0)
"""The reference's Llama-3-8B values: same model_type as Llama-2, so selectable, not a preset default."""
_GPTJ = WiseReference(act_ratio=0.88, n_iter=70, alpha=15.0, beta=40.0, gamma=20.0)
_GPT2 = WiseReference(act_ratio=0.8, n_iter=40, alpha=5.0, beta=20.0, gamma=10.0)

_DOWN_PROJ = "model.layers.{i}.mlp.down_proj"


def _gated(model_type: str, depth: Fraction, activation: str = "silu", *,
           attrs: tuple[str, ...] = ("hidden_act",), wise: WiseReference = _LLAMA2) -> ArchPreset:
    """A Llama-style gated MLP: down_proj is the value matrix (intermediate -> hidden)."""
    return ArchPreset(model_type, _DOWN_PROJ, depth, activation, attrs, wise)


# Depths are the reference layer over the reference model's depth, as exact fractions so that the
# reference layer comes back exactly: Llama-2/Mistral 27/32 -> 27, Qwen2.5-7B 23/28 -> 23, GPT-J 21/28 -> 21.
# Llama-3/3.1-8B (29 of 32) share model_type "llama" and get 27: use --layer 29 for the reference setting.
# Llama-3.2-3B's reference layer 27 is its last layer, which the paper's ablation shows fails; we give 24.
# Qwen3 and Gemma have no reference preset: they borrow their nearest sibling's depth and Llama-2's values.
_PRESETS: Mapping[str, ArchPreset] = MappingProxyType({
    "llama": _gated("llama", Fraction(27, 32)),
    "mistral": _gated("mistral", Fraction(27, 32)),
    "qwen2": _gated("qwen2", Fraction(23, 28)),
    "qwen3": _gated("qwen3", Fraction(23, 28)),
    "gemma": _gated("gemma", Fraction(4, 5), "gelu_pytorch_tanh", attrs=("hidden_activation", "hidden_act")),
    "gemma2": _gated("gemma2", Fraction(4, 5), "gelu_pytorch_tanh", attrs=("hidden_activation", "hidden_act")),
    # GPT-J: fc_out is the value matrix and has a bias, which the side memory must keep (wise.md §7).
    "gptj": ArchPreset("gptj", "transformer.h.{i}.mlp.fc_out", Fraction(3, 4), "gelu_new",
                       ("activation_function",), _GPTJ),
    # GPT-2: we edit c_proj, the value matrix (4h -> h) like down_proj/fc_out everywhere else, so the
    # side memory means the same thing on every architecture. The reference edits c_fc (layer 8 of 48),
    # the key matrix (h -> 4h); the WISE method accepts it with --module transformer.h.8.mlp.c_fc. Both
    # are Conv1D (weight stored transposed, in x out). The depth is the paper's 80% rule of thumb, not 8/48.
    "gpt2": ArchPreset("gpt2", "transformer.h.{i}.mlp.c_proj", Fraction(4, 5), "gelu_new",
                       ("activation_function",), _GPT2),
})


def supported_model_types() -> tuple[str, ...]:
    """The ``config.model_type`` values that have a preset."""
    return tuple(_PRESETS)


def preset_for(config: Any) -> ArchPreset:
    """The preset of `config.model_type`; BadInputError (telling to give the module) if there is none."""
    model_type = getattr(config, "model_type", None) or "unknown"
    preset = _PRESETS.get(model_type)
    if preset is None:
        which = "the path of the FFN value module to edit (e.g. model.layers.20.mlp.down_proj)"
        raise BadInputError(f"architecture '{model_type}' has no preset: give the option module with {which}",
                            cli=f"architecture '{model_type}' has no preset: pass --module with {which}")
    return preset


def num_layers(config: Any) -> int:
    """The number of transformer blocks (``num_hidden_layers``; GPT-2/GPT-J map ``n_layer`` onto it)."""
    n = getattr(config, "num_hidden_layers", None)
    if not isinstance(n, int):
        unknown = f"the config of architecture '{getattr(config, 'model_type', 'unknown')}' does not say how many " \
                  "layers the model has"
        raise BadInputError(f"{unknown}: give the option module with the path of the module to edit",
                            cli=f"{unknown}: pass --module with the path of the module to edit")
    return n


def default_layer(config: Any) -> int:
    """The layer WISE edits by default: about 80-85% deep, never layer 0, 1 or the last (wise.md §2)."""
    preset = preset_for(config)
    n = num_layers(config)
    if n < 4:
        few = f"the model has only {n} layers, so no layer avoids the first two and the last (where editing fails)"
        raise BadInputError(f"{few}: give the option layer to choose one anyway",
                            cli=f"{few}: pass --layer to choose one anyway")
    layer = int(preset.depth * n + Fraction(1, 2))  # round half up, in exact arithmetic
    return min(max(layer, 2), n - 2)


def edited_module_path(config: Any, layer: int | None = None, module: str | None = None) -> str:
    """The dotted path of the module to edit.

    An explicit `module` wins; it may contain ``{i}``, filled with `layer`. Otherwise the preset's value
    module of `layer` (default: :func:`default_layer`). Layer indices are checked against the config.
    """
    if module is not None:
        problem = placement_problem(module, layer)
        if problem:
            raise BadInputError(problem)
        if "{i}" in module:
            return normalize_path(module.format(i=_checked_layer(config, layer)))
        return normalize_path(module)
    preset = preset_for(config)
    return preset.module_path(default_layer(config) if layer is None else _checked_layer(config, layer))


def _checked_layer(config: Any, layer: int) -> int:
    n = num_layers(config)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise BadInputError(f"layer {layer} is out of range: this model has {n} layers, numbered 0 to {n - 1}")
    return layer
