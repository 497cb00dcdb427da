"""A delta on the command line: loaded whatever the load's dtype, refused in one sentence (exit 2) when
its files do not match each other, and its location named by the flag that gave it."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import wiseedit.artifacts.location as location_module
import wiseedit.artifacts.reading as reading_module
from wiseedit.cli.app import app

CPU = ["--device", "cpu"]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"HF_HUB_OFFLINE": "1"})
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def grace_delta(run, model_dir, edits_file, tmp_path) -> Path:
    result = run("edit", edits_file, "--model", model_dir, "--method", "grace", *CPU)
    assert result.exit_code == 0, result.output
    return tmp_path / "llama.wiseedit"


@pytest.mark.parametrize("made, loaded", [("float16", "auto"), ("auto", "float16"), ("float16", "bfloat16"),
                                          ("bfloat16", "float16")])
def test_a_delta_loads_whatever_dtype_it_was_made_or_is_loaded_in(run, model_dir, edits_file, tmp_path, made,
                                                                  loaded):
    made_run = run("edit", edits_file, "--model", model_dir, "--method", "none", "--dtype", made, *CPU)
    assert made_run.exit_code == 0, made_run.output
    result = run("load", "--delta", tmp_path / "llama.wiseedit", "--dtype", loaded, "--json", *CPU)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["base_check"] == "ok"


def _rewrite(delta: Path, change) -> None:
    file = delta / "delta.safetensors"
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt", "wiseedit_format_version": "1", "method": "grace"})


@pytest.mark.parametrize("name", ["keys", "values", "radii", "labels"])
@pytest.mark.parametrize("rows", [-1, 1])
def test_a_tensor_of_another_shape_is_damage_named_with_both_shapes(run, grace_delta, name, rows):
    before = load_file(grace_delta / "delta.safetensors")[name]
    assert before.shape[0] >= 2, "the fixture's codebook has an entry per edit"

    def reshape(tensors):
        tensor = tensors[name]
        tensors[name] = tensor[:rows] if rows < 0 else torch.cat([tensor, tensor[:rows]])

    _rewrite(grace_delta, reshape)
    after = load_file(grace_delta / "delta.safetensors")[name]
    saved = snapshot(grace_delta)
    for args in (["load", "--delta", grace_delta], ["eval", "--delta", grace_delta],
                 ["edit", grace_delta.parent / "edits.jsonl", "--delta", grace_delta]):
        result = run(*args, *CPU)
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines()[-1] == (
            f"error: {grace_delta / 'delta.safetensors'}: tensor {name!r} is {str(after.dtype)[6:]} of shape "
            f"{tuple(after.shape)}, but {grace_delta / 'wiseedit_config.json'} records {str(before.dtype)[6:]} of "
            f"shape {tuple(before.shape)}; the delta is damaged")
    assert snapshot(grace_delta) == saved


@pytest.mark.parametrize("extra", ["keys.backup", "memory.0.values", "z"])
def test_a_tensor_the_delta_does_not_hold_is_refused_not_dropped(run, grace_delta, tmp_path, extra):
    _rewrite(grace_delta, lambda tensors: tensors.__setitem__(extra, torch.ones(3)))
    saved = snapshot(grace_delta)
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "m", "prompt": "The sky is", "target": "green"}\n')
    for args in (["load", "--delta", grace_delta], ["edit", more, "--delta", grace_delta]):
        result = run(*args, *CPU)
        assert result.exit_code == 2, result.output
        assert f"holds tensor {extra!r}, which {grace_delta / 'wiseedit_config.json'} does not list" in result.stderr
    assert snapshot(grace_delta) == saved  # nothing dropped by a save


def test_a_tensor_the_config_lists_but_the_file_lacks_is_damage(run, grace_delta):
    _rewrite(grace_delta, lambda tensors: tensors.pop("radii"))
    result = run("load", "--delta", grace_delta, *CPU)
    assert result.exit_code == 2 and "lacks tensor 'radii'" in result.stderr and "damaged" in result.stderr


def test_a_read_only_delta_is_named_by_its_own_flag(run, grace_delta, tmp_path, monkeypatch):
    real = os.access
    read_only = {grace_delta.resolve(), grace_delta.absolute()}
    monkeypatch.setattr(location_module.os, "access",
                        lambda path, mode: False if Path(path) in read_only and mode & os.W_OK else real(path, mode))
    saved = snapshot(grace_delta)
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "m", "prompt": "The sky is", "target": "green"}\n')
    result = run("edit", more, "--delta", grace_delta, *CPU)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: --delta {grace_delta.absolute()}: {grace_delta.absolute()} is not writable; pass --out DIR "
        "to save the continued delta elsewhere")
    elsewhere = run("edit", more, "--delta", grace_delta, "--out", tmp_path / "copy.wiseedit", *CPU)
    assert elsewhere.exit_code == 0, elsewhere.output  # reading it needs no write access
    assert snapshot(grace_delta) == saved


def _refuse_reading(file: Path):
    real = open

    def fake_open(path, *args, **kwargs):
        if Path(path) == file:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    return fake_open


def test_a_tensor_file_the_user_may_not_read_is_not_called_damaged(run, grace_delta, monkeypatch):
    file = grace_delta / "delta.safetensors"
    if os.geteuid() != 0:
        file.chmod(0)
    else:  # root reads anything: simulate what the OS answers another user
        monkeypatch.setattr(reading_module, "open", _refuse_reading(file), raising=False)
    try:
        result = run("load", "--delta", grace_delta, *CPU)
    finally:
        file.chmod(0o644)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == f"error: {file} cannot be read (Permission denied)"


def test_a_default_delta_folder_that_is_not_writable_says_so_and_how_to_choose_another(run, model_dir, edits_file,
                                                                                      tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(location_module.os, "access",
                        lambda path, mode: False if Path(path) == tmp_path and mode & os.W_OK else real(path, mode))
    result = run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: the default delta folder {tmp_path / 'llama.wiseedit'}: {tmp_path} is not writable; pass "
        "--out DIR to write elsewhere")
