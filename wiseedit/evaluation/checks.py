"""``--fail-under``: bars the figures of an evaluation must reach, for CI gates before shipping a model.

Bars are lower bounds on figures where higher is better: rel, gen, loc, port, rel_generated and ood
(the temporal suite's OOD rate). The hallucination suite's perplexity (``ppl``, lower is better) has
no bar here; gate it on the ``--json`` document. A bar on a figure the run did not measure (gen on a
suite without rephrases, say) fails: a gate must not pass on a number that does not exist.
"""

from __future__ import annotations

import math
from typing import Sequence

from wiseedit.errors import BadInputError

#: The figures a bar can be set on (all: higher is better).
BAR_METRICS: tuple[str, ...] = ("rel", "gen", "loc", "port", "rel_generated", "ood")


def parse_bars(text: str | None) -> dict[str, float]:
    """``"rel=0.9,loc=0.99"`` -> ``{"rel": 0.9, "loc": 0.99}``; BadInputError on an unknown name, a
    value that is not a number, or a name given twice."""
    bars: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise BadInputError(f"--fail-under expects METRIC=VALUE[,METRIC=VALUE...], got {item.strip()!r}")
        if name not in BAR_METRICS:
            raise BadInputError(f"--fail-under: unknown metric {name!r}; choose from {', '.join(BAR_METRICS)}")
        try:
            bar = float(value)
        except ValueError:
            raise BadInputError(f"--fail-under {name}: {value!r} is not a number") from None
        if not (math.isfinite(bar) and 0 <= bar <= 1):  # every figure is a rate: a bar above 1 always fails
            raise BadInputError(f"--fail-under {name}: the bar must be a number from 0 to 1, got {value!r}")
        if name in bars:
            raise BadInputError(f"--fail-under: {name} is given twice")
        bars[name] = bar
    return bars


def failures(rows: Sequence[dict], bars: dict[str, float]) -> list[str]:
    """One line per (method, T, metric) below its bar (or not measured), in row order."""
    out = []
    for row in rows:
        for name, bar in bars.items():
            value = row.get(name)
            where = f"{row['method']} T={row['T']}: {name}"
            if value is None:
                out.append(f"{where} was not measured on this suite (bar {bar:g})")
            elif value < bar:
                out.append(f"{where} = {value:.4f} is below the bar {bar:g}")
    return out
