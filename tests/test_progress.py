"""Progress without a terminal: plain lines at a steady pace, and no transformers bar on stderr."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from wiseedit.cli.output import EditProgress, StepProgress
from wiseedit.cli.progress_lines import ProgressLines, clock_text

LINE = re.compile(r"^(?P<what>.+) (?P<n>\d+)/(?P<total>\d+)(?P<extra>.*) elapsed (?P<elapsed>\d+:\d\d:\d\d) "
                  r"ETA (?P<eta>\d+:\d\d:\d\d|\?)$")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_of(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("total, step_seconds, interval", [(10, 7.0, 30.0), (100, 1.0, 30.0), (5, 40.0, 30.0),
                                                           (50, 0.5, 10.0)])
def test_lines_come_at_start_at_most_every_interval_and_at_the_end(total, step_seconds, interval):
    buffer, clock = io.StringIO(), Clock()
    progress = ProgressLines(Console(file=buffer, width=200), interval=interval, clock=clock)
    task = progress.add_task("editing", total=total)
    printed_at = [0.0]
    for done in range(1, total + 1):
        clock.now += step_seconds
        before = len(lines_of(buffer))
        progress.update(task, completed=done)
        if len(lines_of(buffer)) > before:
            printed_at.append(clock.now - 1000.0)
    progress.stop()

    lines = [LINE.match(line) for line in lines_of(buffer)]
    assert all(lines), lines_of(buffer)
    assert (lines[0]["n"], lines[0]["eta"]) == ("0", "?")
    assert (int(lines[-1]["n"]), lines[-1]["eta"]) == (total, "0:00:00")
    assert lines[-1]["elapsed"] == clock_text(total * step_seconds)
    gaps = [b - a for a, b in zip(printed_at, printed_at[1:])]
    assert all(gap >= interval for gap in gaps[:-1])  # the last line is the end, whenever it comes
    if total * step_seconds < interval:
        assert len(lines) == 2  # a short task: its start and its end
    # between lines no gap is longer than the interval plus one step: a long run keeps saying where it is
    assert all(gap <= interval + step_seconds for gap in gaps)
    for match in lines[1:-1]:  # the ETA is the rate so far times what is left
        done, elapsed = int(match["n"]), _seconds(match["elapsed"])
        assert match["eta"] == clock_text(elapsed / done * (total - done))


def _seconds(text: str) -> int:
    h, m, s = map(int, text.split(":"))
    return 3600 * h + 60 * m + s


def test_a_resumed_count_takes_its_eta_from_the_steps_run_now():
    buffer, clock = io.StringIO(), Clock()
    progress = ProgressLines(Console(file=buffer, width=200), interval=30, clock=clock)
    task = progress.add_task("meta-training", total=1000, completed=900, loss="-")
    clock.now += 60
    progress.update(task, completed=910, loss="0.5000")
    assert lines_of(buffer) == ["meta-training 900/1000 loss - elapsed 0:00:00 ETA ?",
                                "meta-training 910/1000 loss 0.5000 elapsed 0:01:00 ETA 0:09:00"]


def test_without_a_terminal_the_cli_displays_print_lines_not_bars():
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)  # a file: not interactive
    with EditProgress(console) as progress:
        progress(0, 2)
        progress(2, 2)
    assert [LINE.match(line)["n"] for line in lines_of(buffer)] == ["0", "2"]
    with StepProgress(console) as steps:
        assert isinstance(steps.progress, ProgressLines)


def _wiseedit(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "wiseedit.cli.app", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


def test_a_captured_cli_run_shows_plain_progress_and_no_loading_bar(model_dir, other_model_dir, edits_file,
                                                                    tmp_path):
    edited = _wiseedit("edit", edits_file, "--model", model_dir, "--method", "grace", "--json", "--device", "cpu",
                       cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert json.loads(edited.stdout)["edits"] == 3
    progress = [m for m in map(LINE.match, edited.stderr.splitlines()) if m]
    assert [(m["what"], m["n"], m["total"]) for m in progress] == [("editing", "0", "3"), ("editing", "3", "3")]
    assert "Loading weights" not in edited.stderr and "\r" not in edited.stderr

    evaluated = _wiseedit("eval", "--model", model_dir, "--suite", edits_file, "--method", "grace", "-T", "1",
                          "--json", "--device", "cpu", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    shown = [m for m in map(LINE.match, evaluated.stderr.splitlines()) if m]
    assert ("edits", "0", "3") in [(m["what"].strip(), m["n"], m["total"]) for m in shown]
    assert ("edits", "3", "3") in [(m["what"].strip(), m["n"], m["total"]) for m in shown]
    assert "Loading weights" not in evaluated.stderr and "\r" not in evaluated.stderr

    # an error after the model was loaded (the delta's base differs): one line, no bar before it
    failed = _wiseedit("load", "--delta", tmp_path / "llama.wiseedit", "--model", other_model_dir, "--json",
                       "--device", "cpu", cwd=tmp_path)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.splitlines()[-1].startswith("error: delta ") and "Loading weights" not in failed.stderr
