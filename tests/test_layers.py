"""The floors of README's Layout section: a module imports only from its own floor or the floors below
(read from the source, imports inside functions included), and no module is over 400 lines."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wiseedit"

#: README's floors, bottom first: a module or package (its path under wiseedit/) -> its floor.
FLOORS = {
    "errors.py": 1, "tokens.py": 1, "devices.py": 1,
    "edits": 2, "data": 2, "chat.py": 2, "methods": 2, "models": 2, "artifacts": 2,
    "wise": 3, "recipe": 3, "baselines": 3, "world": 3, "testing": 3,
    "registry.py": 4, "session.py": 4, "generation.py": 4,
    "evaluation": 5, "export": 5,
    "api.py": 6, "cli": 6, "__init__.py": 6,
}
#: What the edit path must never import, whatever the floors say.
NEVER = {"wise": "evaluation", "recipe": "evaluation", "baselines": "evaluation", "methods": "evaluation",
         "edits": "evaluation", "models": "evaluation", "artifacts": "evaluation", "data": "evaluation"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def room(path: Path) -> str:
    """The FLOORS key of a file under wiseedit/: its top-level package, or the file itself."""
    return path.relative_to(PACKAGE).parts[0]


def room_of_module(name: str) -> str | None:
    """The FLOORS key of an imported ``wiseedit.x.y`` (None for another package)."""
    parts = name.split(".")
    if parts[0] != "wiseedit":
        return None
    if len(parts) == 1:
        return "__init__.py"
    return parts[1] if (PACKAGE / parts[1]).is_dir() else parts[1] + ".py"


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every wiseedit import in `path`, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("wiseedit",) + path.relative_to(PACKAGE).parent.parts)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from wiseedit import x` may import the submodule x
            names = [f"{base}.{a.name}" for a in node.names] if base == "wiseedit" else [base]
            found += [(node.lineno, name) for name in names]
    return found


def test_every_module_has_a_floor():
    assert {room(p) for p in modules()} - set(FLOORS) == set(), "add the new module to README's floors"


def test_no_import_runs_up_a_floor():
    wrong = []
    for path in modules():
        mine = room(path)
        for line, name in imported(path):
            theirs = room_of_module(name)
            if theirs is None or theirs == mine:
                continue
            if theirs not in FLOORS:  # `from wiseedit import __version__` and the like
                continue
            if FLOORS[theirs] > FLOORS[mine] or NEVER.get(mine) == theirs:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} (floor {FLOORS[mine]}) imports "
                             f"{name} (floor {FLOORS[theirs]})")
    assert wrong == []


@pytest.mark.parametrize("text, expected", [
    ("from wiseedit.evaluation.metrics import x", ["wiseedit.evaluation.metrics"]),
    ("import wiseedit.evaluation.suites", ["wiseedit.evaluation.suites"]),
    ("def f():\n    from wiseedit.evaluation import suites", ["wiseedit.evaluation"]),
    ("from wiseedit import api", ["wiseedit.api"]),
])
def test_imports_are_read_inside_functions_too(tmp_path, text, expected, monkeypatch):
    fake = tmp_path / "wiseedit" / "wise" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(text)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "wiseedit")
    assert [name for _, name in imported(fake)] == expected


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
