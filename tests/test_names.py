"""One name, one meaning: no public name is defined twice; the library's errors name its parameters,
the command line's its flags; results print short; no declared dependency goes unused."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import ast
import re
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

import wiseedit
from wiseedit.cli.app import app
from wiseedit.errors import BadInputError

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {"main"}  # each runnable module's own
FLAG = re.compile(r"(?<![\w-])--[a-z]")  # a command-line flag such as --force


def test_no_public_name_is_defined_twice():
    where = defaultdict(list)
    for path in sorted((ROOT / "wiseedit").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and not node.name.startswith("_") and node.name not in ENTRY_POINTS:
                where[node.name].append(str(path.relative_to(ROOT)))
    assert {name: files for name, files in where.items() if len(files) > 1} == {}


def test_every_declared_dependency_is_imported():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d)[0].strip() for d in declared}
    imported = set()
    for path in (ROOT / "wiseedit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert names - imported == set()


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke ``wiseedit ARGS`` in-process from tmp_path."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"HF_HUB_OFFLINE": "1"})
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def python_and_cli(error: BaseException) -> tuple[str, str]:
    return str(error), error.for_cli()


def test_edit_onto_an_existing_folder_speaks_python_and_the_cli_its_flags(model_dir, edits_file, tmp_path, run):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "wiseedit_config.json").write_text("{}")
    with pytest.raises(BadInputError) as error:
        wiseedit.edit(str(model_dir), edits_file, method="none", out=out, device="cpu")
    python, cli = python_and_cli(error.value)
    assert "overwrite=True" in python and f"delta={str(out)!r}" in python and not FLAG.search(python), python
    assert "--force" in cli and f"--delta {out}" in cli
    result = run("edit", edits_file, "--model", model_dir, "--method", "none", "--out", out, "--device", "cpu")
    assert result.exit_code == 2 and f"error: {cli}" in result.stderr


@pytest.mark.parametrize("make", [
    lambda tmp: wiseedit.edit(None, tmp / "e.jsonl", method="none"),  # no model and no delta
    lambda tmp: __import__("wiseedit.evaluation.runner", fromlist=["EvalConfig"]).EvalConfig(methods=()),
    lambda tmp: __import__("wiseedit.artifacts.location", fromlist=["x"]).check_writable(tmp / "f" / "x",
                                                                                          "output_path"),
    lambda tmp: __import__("wiseedit.export.merged", fromlist=["x"]).check_mergeable("grace"),
    lambda tmp: __import__("wiseedit.models.presets", fromlist=["x"]).preset_for(type("C", (), {"model_type": "x"})),
], ids=["edit-model", "eval-methods", "writable", "merged", "preset"])
def test_library_errors_name_parameters_not_flags(tmp_path, make):
    (tmp_path / "e.jsonl").write_text('{"prompt": "a", "target": "b"}\n')
    (tmp_path / "f").write_text("a file where a folder should be")
    with pytest.raises(BadInputError) as error:
        make(tmp_path)
    python, cli = python_and_cli(error.value)
    assert not FLAG.search(python), python
    assert FLAG.search(cli), cli  # the command line still says which flag to pass


def test_results_print_short(model_dir, edits_file, tmp_path):
    result = wiseedit.edit(str(model_dir), edits_file, method="none", out=tmp_path / "d", device="cpu")
    text = repr(result)
    assert len(text) < 300, text
    assert str(tmp_path / "d") in text and "method='none'" in text and "edits=3" in text
    for part in (result.delta, result.edited):
        assert len(repr(part)) < 200 and str(tmp_path / "d") in repr(part)
