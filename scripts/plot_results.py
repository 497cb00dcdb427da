"""One plot (and one markdown table) from several ``wiseedit eval`` results folders.

    python scripts/plot_results.py runs/world-100 runs/world-1000 ... -o docs/world-results.png

A results folder holds the methods and T values of one run; docs/results.md combines runs made with
different ``--limit`` (T <= 100 on the first 100 edits, T = 1000 on all of them). Where two runs
measure the same method and T, the later argument wins. Prints the table Rel / Gen / Loc (Rel(gen))
and seconds per edit, method by T, on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wiseedit.evaluation.plot import plot_results


def combine(folders: list[Path]) -> dict:
    """A results document whose metrics and timing are the union of the folders' (later wins)."""
    combined: dict = {"metrics": {}, "timing": {}, "data": {}, "model": {}}
    for folder in folders:
        document = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        for part in ("metrics", "timing"):
            for method, per_t in document.get(part, {}).items():
                combined[part].setdefault(method, {}).update(per_t)
        combined["data"] = {**document["data"], "edits": "100 / 1000"}
        combined["model"] = document["model"]
    return combined


def table(document: dict) -> str:
    ts = sorted({int(t) for per_t in document["metrics"].values() for t in per_t})
    lines = ["| method | " + " | ".join(f"T = {t}" for t in ts) + " |", "| --- |" + " --- |" * len(ts)]
    for method, per_t in document["metrics"].items():
        cells = []
        for t in ts:
            f = per_t.get(str(t))
            if f is None:
                cells.append("not run")
                continue
            seconds = document["timing"].get(method, {}).get(str(t), {}).get("seconds_per_edit")
            cell = f"{f['rel']:.2f} / {f['gen']:.2f} / {f['loc']:.2f} ({f['rel_generated']:.2f})"
            cells.append(cell + (f", {seconds:.2g} s" if seconds is not None else ""))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    document = combine(args.folders)
    plot_results(document, args.out)
    print(table(document))


if __name__ == "__main__":
    main()
