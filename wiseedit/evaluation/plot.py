"""``--plot``: Rel, Gen and Loc against T (log scale), one line per method, as a PNG.

matplotlib is an optional dependency (``pip install 'wiseedit[plot]'``), imported only here and only
when a plot is asked for. The figure is drawn with matplotlib's object API on an Agg canvas, so no
global pyplot state or display backend is touched.
"""

from __future__ import annotations

from pathlib import Path

from wiseedit.errors import BadInputError

PANELS = (("rel", "Rel"), ("gen", "Gen"), ("loc", "Loc"))
MISSING = "--plot needs matplotlib: pip install 'wiseedit[plot]'"


def require_matplotlib() -> None:
    """Raise BadInputError (exit 2) with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BadInputError(MISSING) from None


def plot_results(document: dict, path: Path) -> Path:
    """Draw the figures of a ``results.json`` document against T into the PNG `path`."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(PANELS), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PANELS), sharey=True)
    for ax, (key, title) in zip(axes, PANELS):
        for method, per_T in document["metrics"].items():
            points = sorted((int(T), f[key]) for T, f in per_T.items() if f.get(key) is not None)
            if points:
                ax.plot([t for t, _ in points], [v for _, v in points], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("T (edits)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    data = document.get("data", {})
    model = str(document.get("model", {}).get("name", ""))
    figure.suptitle(f"{Path(data.get('suite', '')).name} ({data.get('edits', '?')} edits), "
                    f"{Path(model).name or model}", fontsize="small")
    figure.savefig(path, format="png", dpi=100)
    return path
