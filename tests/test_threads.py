"""``--threads``: every command takes it; without it, OMP_NUM_THREADS or the measured default decides."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import pytest
import torch
from typer.testing import CliRunner

from wiseedit.cli.app import app
from wiseedit.cli.common import DEFAULT_THREADS

COMMANDS = ["edit", "eval", "load", "export", "merge-shards", "train-recipe"]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"HF_HUB_OFFLINE": "1"})
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_documents_threads(run, command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "--threads" in result.stdout


@pytest.mark.parametrize("given, env, expected", [
    (["--threads", "3"], None, 3), (["--threads", "2"], "4", 2), ([], "3", 3), ([], None, DEFAULT_THREADS),
    ([], "", DEFAULT_THREADS), ([], "0", DEFAULT_THREADS), ([], "two", DEFAULT_THREADS)])
def test_threads_come_from_the_flag_then_omp_num_threads_then_the_default(run, model_dir, monkeypatch, given,
                                                                          env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    torch.set_num_threads(5)
    try:
        result = run("load", "--model", model_dir, "--device", "cpu", *given)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_a_bad_thread_count_is_a_usage_error(run, bad):
    result = run("load", "--model", "world", "--threads", bad)
    assert result.exit_code == 2 and "--threads" in result.output
