"""The docs hold together: every docs file that the README, the docs or the code names exists, no
numbered work periods and no pointers outside the repository, the changelog is by release, the README
reaches its commands early, and the plot's figures file says what docs/results.md's table says."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_FILES = [p for folder in ("wiseedit", "scripts", "benchmarks", "tests")
              for p in sorted((ROOT / folder).rglob("*.py"))]
DOC_REFERENCE = re.compile(r"\bdocs/[\w.-]+\.(?:md|png|csv)\b")
WORK_PERIOD = re.compile(r"\bsessions?[ -]\d+", re.IGNORECASE)
FIGURES = re.compile(r"([\d.]+) / ([\d.]+) / ([\d.]+) \(([\d.]+)\)")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", DOC_FILES + CODE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_docs_exist_and_no_work_periods(path):
    body = text(path)
    missing = sorted({ref for ref in DOC_REFERENCE.findall(body) if not (ROOT / ref).is_file()})
    assert not missing, f"{path.name} names docs that do not exist: {missing}"
    assert not WORK_PERIOD.findall(body), f"{path.name} numbers work periods: {WORK_PERIOD.findall(body)}"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_point_inside_the_repository(path):
    body = text(path)
    assert "../shared" not in body and "shared/docs" not in body
    # relative links inside docs/ (an image, a page) resolve from docs/
    for target in re.findall(r"\]\((?!https?:)([^)#]+)\)", body):
        assert (path.parent / target).exists(), f"{path.name}: link to {target} does not resolve"


def test_changelog_is_by_release():
    body = text(ROOT / "CHANGELOG.md")
    assert "## [Unreleased]" in body
    assert re.search(r"^## \[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}$", body, re.MULTILINE)


def test_readme_reaches_its_two_commands_within_40_lines():
    head = text(ROOT / "README.md").splitlines()[:40]
    assert any(line.startswith(".venv/bin/wiseedit edit") for line in head)
    assert ".venv/bin/python -m pytest -q" in head


def test_plotted_figures_are_the_results_table():
    """docs/world-results.csv (what the plot draws) equals docs/results.md's world table, figure by
    figure, for every method and T it holds."""
    rows = {}
    body = text(ROOT / "docs" / "results.md")
    section = body.split("\n## World suite\n", 1)[1].split("\n## ", 1)[0]  # the world model's table only
    for line in section.splitlines():
        cells = [c.strip().replace("*", "") for c in line.strip().strip("|").split("|")]
        label = re.fullmatch(r"`([\w-]+)`(?: \(.*\))?", cells[0])  # `none` (unedited); not `recipe`, `--seed 1`
        if len(cells) == 5 and label:
            rows[label.group(1)] = cells[1:]
    lines = [line for line in text(ROOT / "docs" / "world-results.csv").splitlines()
             if line.strip() and not line.startswith("#")]
    checked = 0
    for row in csv.DictReader(lines):
        column = ("1", "10", "100", "1000").index(row["T"])
        cell = rows[row["method"]][column]
        if not row["rel"]:  # not measured: the table says so
            assert cell == "not measured", f"{row['method']} at T = {row['T']}: {cell!r} in results.md"
            checked += 1
            continue
        found = FIGURES.search(cell)
        assert found, f"results.md has no figures for {row['method']} at T = {row['T']}"
        table = [float(v) for v in found.groups()]
        plotted = [float(row[m]) for m in ("rel", "gen", "loc", "rel_generated")]
        assert table == plotted, (row["method"], row["T"], table, plotted)
        checked += 1
    assert checked == len(lines) - 1 >= 20  # every row of the csv, at least 5 methods x 4 T
