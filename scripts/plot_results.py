"""Rel, Gen and Loc against T as one PNG (and a markdown table on stdout), from a figures file or from
``wiseedit eval`` results folders.

    python scripts/plot_results.py docs/world-results.csv -o docs/world-results.png
    python scripts/plot_results.py runs/wise-100 runs/wise-1000 -o plot.png

A figures file is CSV with the columns ``method,T,rel,gen,loc,rel_generated``; lines starting with
``#`` are comments, and ``# title: ...`` gives the plot's title. An empty cell is a figure not
measured: the plot marks it "not measured" instead of drawing a line through it. A results folder is
what ``wiseedit eval --output-path`` writes; where folders measure the same method and T, the later
argument wins. Needs matplotlib (``pip install 'wiseedit[plot]'``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

#: method -> T -> metric -> value (None: not measured)
Figures = dict[str, dict[int, dict[str, float | None]]]

METRICS = ("rel", "gen", "loc", "rel_generated")
PANELS = (("rel", "Rel (reliability)"), ("gen", "Gen (generalisation)"), ("loc", "Loc (locality)"))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def read_figures(path: Path) -> tuple[Figures, str]:
    """The figures of a CSV figures file, and its ``# title:`` (empty when it has none)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    title = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("# title:")), "")
    rows = csv.DictReader(line for line in lines if line.strip() and not line.startswith("#"))
    figures: Figures = {}
    for row in rows:
        values = {m: float(row[m]) if row.get(m, "").strip() else None for m in METRICS}
        figures.setdefault(row["method"], {})[int(row["T"])] = values
    return figures, title


def combine(folders: list[Path]) -> Figures:
    """The union of the folders' ``results.json`` figures (a later folder wins)."""
    figures: Figures = {}
    for folder in folders:
        document = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for method, per_t in document.get("metrics", {}).items():
            for t, f in per_t.items():
                figures.setdefault(method, {})[int(t)] = {m: f.get(m) for m in METRICS}
    return figures


def all_ts(figures: Figures) -> list[int]:
    return sorted({t for per_t in figures.values() for t in per_t})


def cell(f: dict[str, float | None] | None) -> str:
    if f is None or any(f[m] is None for m in ("rel", "gen", "loc")):
        return "not measured"
    text = f"{f['rel']:.4g} / {f['gen']:.4g} / {f['loc']:.4g}"
    return text + (f" ({f['rel_generated']:.2f})" if f["rel_generated"] is not None else "")


def table(figures: Figures) -> str:
    """A markdown table, method by T: Rel / Gen / Loc (Rel(gen))."""
    ts = all_ts(figures)
    lines = ["| method | " + " | ".join(f"T = {t}" for t in ts) + " |", "| --- |" + " --- |" * len(ts)]
    for method, per_t in figures.items():
        lines.append(f"| {method} | " + " | ".join(cell(per_t.get(t)) for t in ts) + " |")
    return "\n".join(lines)


def draw(figures: Figures, out: Path, title: str) -> Path:
    """Three panels against T, evenly spaced and labelled as plain numbers; each method shifted a
    little sideways with its own marker so that equal figures (many sit at 1.00) stay visible; the
    legend below the panels; a missing figure marked "not measured" at the foot of its panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ts = all_ts(figures)
    figure = Figure(figsize=(13, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PANELS), sharey=True)
    n = len(figures)
    for ax, (key, label) in zip(axes, PANELS):
        for k, (method, per_t) in enumerate(figures.items()):
            shift = (k - (n - 1) / 2) * 0.08
            color = f"C{k}"
            xs = [i + shift for i, t in enumerate(ts) if (per_t.get(t) or {}).get(key) is not None]
            ys = [per_t[t][key] for t in ts if (per_t.get(t) or {}).get(key) is not None]
            ax.plot(xs, ys, marker=MARKERS[k % len(MARKERS)], markersize=7, linewidth=1.8,
                    color=color, label=method, alpha=0.9)
            for i, t in enumerate(ts):
                if (per_t.get(t) or {}).get(key) is None:
                    ax.text(i + shift, 0.03, "not measured", rotation=90, fontsize=7, color=color,
                            ha="center", va="bottom")
        ax.set_xticks(range(len(ts)), [str(t) for t in ts])
        ax.set_xlim(-0.5, len(ts) - 0.5)
        ax.set_ylim(-0.03, 1.06)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", ".25", ".50", ".75", "1.00"])
        ax.set_title(label)
        ax.set_xlabel("T (edits applied before measuring)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("score (higher is better)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=n, frameon=False)
    if title:
        figure.suptitle(title)
    figure.savefig(out, format="png", dpi=110)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path, help="one CSV figures file, or results folders")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--title", default=None, help="the plot's title (default: the file's # title:)")
    args = parser.parse_args()
    if len(args.sources) == 1 and args.sources[0].is_file():
        figures, title = read_figures(args.sources[0])
    else:
        figures, title = combine(args.sources), ""
    draw(figures, args.out, args.title if args.title is not None else title)
    print(table(figures))


if __name__ == "__main__":
    main()
