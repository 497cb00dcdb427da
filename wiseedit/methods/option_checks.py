"""One-sentence checks of method option values, shared by the methods' ``check_options``.

Each function returns what is wrong with one value, in the words "<name> must be <what is allowed>,
got <value>", or None when it is fine; the caller raises with its method's name in front.
"""

from __future__ import annotations

import math


def whole_number_problem(name: str, value, low: int | None = None, high: int | None = None) -> str | None:
    """`value` must be an int (not a bool, not a float such as 2.5 or 30.0) in [low, high]."""
    if (isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)
            and (high is None or value <= high)):
        return None
    if low is not None and high is not None:
        allowed = f"a whole number from {low} to {high}"
    else:
        allowed = "a whole number" + (f" >= {low}" if low is not None else "")
    return f"{name} must be {allowed}, got {value!r}"


def number_problem(name: str, value, low: float | None = None, high: float | None = None, *,
                   above: bool = False, infinite: bool = False) -> str | None:
    """`value` must be an int or a float (not a bool, not NaN), >= low (> low when `above`), <= high, and
    finite unless `infinite`."""
    real = ((isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, float) and not math.isnan(value) and (infinite or not math.isinf(value))))
    if (real and (low is None or value > low or (value == low and not above))
            and (high is None or value <= high)):
        return None
    if low is not None and high is not None:
        allowed = f"a number in {'(' if above else '['}{low}, {high}]"
    elif low is not None:
        allowed = ("a positive number" if above and low == 0 else f"a number {'>' if above else '>='} {low}")
    else:
        allowed = "a number"
    if not infinite and high is None:
        allowed = allowed.replace("number", "finite number", 1)
    return f"{name} must be {allowed}, got {value!r}"


def choice_problem(name: str, value, choices: tuple) -> str | None:
    """`value` must be one of `choices` (strings)."""
    if isinstance(value, str) and value in choices:
        return None
    return f"{name} must be one of {', '.join(choices)}, got {value!r}"


def bool_problem(name: str, value) -> str | None:
    """`value` must be a bool (true or false on the command line)."""
    return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"


def placement_problem(module, layer) -> str | None:
    """The edited module's path (`module`, may hold ``{i}``) and `layer` together: the checks that need no
    model (:func:`wiseedit.models.presets.edited_module_path` adds the layer's range)."""
    if module is None:
        return None
    if not isinstance(module, str) or not module.strip():
        return f"module must be a module path such as model.layers.{{i}}.mlp.down_proj, got {module!r}"
    if "{" in module.replace("{i}", "") or "}" in module.replace("{i}", ""):
        return f"module {module!r} may hold no braces but the {{i}} placeholder that the layer fills"
    if "{i}" in module and layer is None:
        return f"module '{module}' has a {{i}} placeholder: give a layer to fill it"
    if "{i}" not in module and layer is not None:
        return (f"both module '{module}' and layer {layer} were given: drop the layer, "
                "or write {i} in the module path where the layer index goes")
    return None
