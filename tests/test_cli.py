"""The ``wiseedit`` command line: help texts, exit codes, stdout/stderr discipline, what is (not) written."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from wiseedit.cli import edit_cmd, load_cmd, merge_cmd
from wiseedit.cli.app import app
from wiseedit.cli.common import DTypeChoice, parse_options, with_flags
from wiseedit.errors import BadInputError

ENV = {"HF_HUB_OFFLINE": "1"}
CPU = ["--device", "cpu"]



@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke ``wiseedit ARGS`` in-process from tmp_path; returns the click Result (stdout, stderr apart)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env=ENV)

    def invoke(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- help, version, choices -----------------------------------------------------------------------------


@pytest.mark.parametrize("command, example", [
    ([], edit_cmd.EXAMPLE),
    (["edit"], edit_cmd.EXAMPLE),
    (["load"], load_cmd.EXAMPLE),
    (["merge-shards"], merge_cmd.EXAMPLE),
])
def test_help_explains_itself_with_an_example(run, command, example):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    assert example in result.stdout  # on one line: the example must fit an 80-column terminal
    if not command:
        for sub in ("edit", "load", "merge-shards"):
            assert sub in result.stdout


def test_version(run):
    from wiseedit import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"wiseedit {__version__}"


def test_cli_choices_are_the_library_ones():
    from wiseedit.registry import METHOD_NAMES, MethodName
    from wiseedit.models import DType

    assert get_args(DTypeChoice) == get_args(DType)
    assert get_args(MethodName) == METHOD_NAMES


def test_the_cli_imports_no_torch_until_a_command_runs():
    # `wiseedit --help` must be instant: the library (torch, transformers) is imported inside commands
    code = "import sys, wiseedit.cli.app; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_usage_errors_exit_2(run):
    assert run("edit", "x.jsonl", "--method", "rome").exit_code == 2
    assert run("edit", "x.jsonl", "--dtype", "int8").exit_code == 2
    assert run("frobnicate").exit_code == 2


# -- --option parsing -----------------------------------------------------------------------------------


def test_options_are_coerced_like_json():
    options = parse_options(["n_iter=30", "lr=0.5", "retrieve=true", "module=null", "merge_algorithm=ties",
                             "replay=False", "name=a=b", "layers=[1, 2]"])
    assert options == {"n_iter": 30, "lr": 0.5, "retrieve": True, "module": None, "merge_algorithm": "ties",
                       "replay": False, "name": "a=b", "layers": [1, 2]}
    assert type(options["n_iter"]) is int


@pytest.mark.parametrize("pairs, message", [
    (["n_iter"], "expects KEY=VALUE"),
    (["=3"], "expects KEY=VALUE"),
    (["n_iter=1", "n_iter=2"], "given twice"),
])
def test_bad_options_are_refused(pairs, message):
    with pytest.raises(BadInputError, match=message):
        parse_options(pairs)


def test_flags_and_options_do_not_both_set_a_key():
    assert with_flags({"n_iter": 2}, layer=3, module=None) == {"n_iter": 2, "layer": 3}
    with pytest.raises(BadInputError, match="--layer and --option layer"):
        with_flags({"layer": 2}, layer=3)


# -- edit -----------------------------------------------------------------------------------------------


def test_edit_writes_a_delta_with_its_audit_log(run, model_dir, edits_file, tmp_path):
    result = run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU)
    assert result.exit_code == 0, result.output
    delta = tmp_path / "llama.wiseedit"  # beside the model folder
    for name in ("wiseedit_config.json", "delta.safetensors", "edits.jsonl"):
        assert (delta / name).is_file()
    log = [json.loads(line) for line in (delta / "edits.jsonl").read_text().splitlines()]
    assert [e["id"] for e in log] == ["a", "b", "edits:3"] and [e["seq"] for e in log] == [1, 2, 3]
    config = json.loads((delta / "wiseedit_config.json").read_text())
    assert config["method"] == "none" and config["num_edits"] == 3
    assert config["base_model_name_or_path"] == str(model_dir.resolve())
    assert result.stdout == ""  # without --json, everything is on stderr
    assert "before → after" in result.stderr and "3 edit(s) added" in result.stderr


def test_edit_json_is_the_only_thing_on_stdout(run, model_dir, edits_file, tmp_path):
    result = run("edit", edits_file, "--model", model_dir, "--method", "none", "--json", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # raises if anything else is on stdout
    assert document["delta"] == str(tmp_path / "llama.wiseedit")
    assert document["method"] == "none" and document["edits"] == 3 and document["total_edits"] == 3
    assert document["seconds_per_edit"] >= 0
    assert [r["id"] for r in document["results"]] == ["a", "b", "edits:3"]
    for row in document["results"]:
        assert set(row) == {"id", "prompt", "target", "before", "after", "recalled"}
        assert row["before"] == row["after"] and row["recalled"] is False  # "none" changes nothing
    assert "before → after" in result.stderr


def test_edit_reads_stdin(run, model_dir, edits_file, tmp_path):
    out = tmp_path / "from-stdin"
    result = run("edit", "-", "--model", model_dir, "--method", "none", "--out", out, "--json", *CPU,
                 input=edits_file.read_bytes())
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "edits.jsonl").read_text().splitlines()]
    assert [e["id"] for e in log] == ["a", "b", "stdin:3"]
    assert json.loads(result.stdout)["delta"] == str(out)


BAD_EDITS = {
    "malformed json": (b'{"prompt": "a", "target": "b"}\n{"prompt": "x", "target": \n', "edits.jsonl:2: json:"),
    "missing field": (b'{"prompt": "a", "target": "b"}\n{"prompt": "x"}\n', "edits.jsonl:2: target: missing"),
    "empty field": (b'{"prompt": "", "target": "b"}\n', "edits.jsonl:1: prompt: empty string"),
    "wrong type": (b'{"prompt": "a", "target": 3}\n', "edits.jsonl:1: target: expected a string, got a number"),
    "duplicate id": (b'{"id": "k", "prompt": "a", "target": "b"}\n{"id": "k", "prompt": "c", "target": "d"}\n',
                     "edits.jsonl:2: id: duplicate id 'k'"),
    "not utf-8": (b'{"prompt": "a", "target": "b"}\n{"prompt": "caf\xe9", "target": "d"}\n',
                  "edits.jsonl:2: encoding: not valid UTF-8"),
}


@pytest.mark.parametrize("content, message", BAD_EDITS.values(), ids=BAD_EDITS.keys())
def test_bad_edit_file_exits_2_naming_file_line_field_and_writes_nothing(run, model_dir, tmp_path, content,
                                                                         message):
    (tmp_path / "edits.jsonl").write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("edit", "edits.jsonl", "--model", model_dir, *CPU)
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no delta, no temporary folder


def test_every_problem_of_the_file_is_reported_on_its_own_line(run, model_dir, tmp_path):
    (tmp_path / "edits.jsonl").write_text('{"prompt": "a"}\n{"target": "b", "prompt": 1}\n')
    result = run("edit", "edits.jsonl", "--model", model_dir, *CPU)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: edits.jsonl:1: target: missing",
                                          "error: edits.jsonl:2: prompt: expected a string, got a number (1)"]


def test_missing_model_folder_is_one_sentence(run, edits_file, tmp_path):
    result = run("edit", edits_file, "--model", tmp_path / "no-such-model", *CPU)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model folder") and "does not exist" in lines[0]
    assert not list(tmp_path.glob("*.wiseedit"))


def test_existing_delta_is_refused_then_continued_then_replaced(run, model_dir, edits_file, tmp_path):
    delta = tmp_path / "llama.wiseedit"
    assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    saved = snapshot(delta)

    again = run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU)
    assert again.exit_code == 2
    assert f"error: {delta} already exists: pass --delta {delta} to continue editing it" in again.stderr
    assert snapshot(delta) == saved  # byte for byte

    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "c", "prompt": "The sky is", "target": "green"}\n')
    appended = run("edit", more, "--delta", delta, "--json", *CPU)  # model and method: the delta's
    assert appended.exit_code == 0, appended.output
    assert json.loads(appended.stdout)["total_edits"] == 4
    log = (delta / "edits.jsonl").read_bytes()
    assert log.startswith(saved[Path("edits.jsonl")]) and log.count(b"\n") == 4

    replaced = run("edit", edits_file, "--model", model_dir, "--method", "none", "--force", *CPU)
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((delta / "wiseedit_config.json").read_text())["num_edits"] == 3


def test_delta_is_refused_on_another_base_or_method(run, model_dir, other_model_dir, edits_file, tmp_path):
    delta = tmp_path / "llama.wiseedit"
    assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    saved = snapshot(delta)

    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "c", "prompt": "The sky is", "target": "green"}\n')
    other = run("edit", more, "--model", other_model_dir, "--delta", delta, *CPU)
    assert other.exit_code == 2
    assert "was made on base" in other.stderr and "differ (sha256:" in other.stderr
    method = run("edit", edits_file, "--delta", delta, "--method", "grace", *CPU)
    assert method.exit_code == 2 and "was made with none, not grace" in method.stderr
    options = run("edit", edits_file, "--delta", delta, "--option", "n_iter=3", *CPU)
    assert options.exit_code == 2 and "keeps the settings it was made with" in options.stderr
    assert snapshot(delta) == saved


def test_unknown_method_option_is_bad_input(run, model_dir, edits_file, tmp_path):
    result = run("edit", edits_file, "--model", model_dir, "--method", "grace", "--option", "bogus=1", *CPU)
    assert result.exit_code == 2
    assert "error: unknown GRACE option(s): bogus" in result.stderr
    assert not (tmp_path / "llama.wiseedit").exists()


def test_internal_errors_are_one_line_unless_debug(run, model_dir, edits_file, monkeypatch, tmp_path):
    import wiseedit.api

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(wiseedit.api, "load_base", broken)
    quiet = run("edit", edits_file, "--model", model_dir, *CPU)
    assert quiet.exit_code == 3
    assert quiet.stderr.endswith("internal error: RuntimeError: boom (run with --debug for the traceback)\n")
    assert "Traceback" not in quiet.stderr
    loud = run("edit", edits_file, "--model", model_dir, "--debug", *CPU)
    assert loud.exit_code == 3
    assert "Traceback (most recent call last)" in loud.stderr and "RuntimeError: boom" in loud.stderr
    assert not (tmp_path / "llama.wiseedit").exists()


@pytest.mark.parametrize("command", ["edit", "eval", "train-recipe", "export", "merge-shards"])
def test_an_output_under_a_file_is_refused_before_the_model_loads(run, model_dir, edits_file, command,
                                                                   monkeypatch, tmp_path):
    delta = tmp_path / "llama.wiseedit"
    assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    saved, text = snapshot(delta), edits_file.read_text()
    import wiseedit.api
    import wiseedit.models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    for module in (wiseedit.api, wiseedit.models):
        monkeypatch.setattr(module, "load_base", never)
    under_file = edits_file / "out"  # a path through a plain file
    args = {"edit": ["edit", edits_file, "--model", model_dir, "-o", under_file],
            "eval": ["eval", "--model", "world", "--suite", "world", "--method", "none", "-T", "1", "-n", "1",
                     "-o", under_file],
            "train-recipe": ["train-recipe", "--model", "world", "--data", "world-train", "-o", under_file],
            "export": ["export", "--delta", delta, "--out", under_file]}
    if command == "merge-shards":  # rewrites the delta in place: a delta in a read-only folder
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only folders")
        delta.chmod(0o555)
        monkeypatch.setattr(wiseedit.api, "load_edited", never)
        try:
            result = run("merge-shards", delta)
        finally:
            delta.chmod(0o755)
        assert result.exit_code == 2 and "is not writable" in result.stderr, result.output
    else:
        result = run(*args[command], *CPU)
        assert result.exit_code == 2, result.output
        assert f"{edits_file} is a file, not a folder" in result.stderr
    assert snapshot(delta) == saved and edits_file.read_text() == text


def test_ids_already_in_the_delta_are_refused_with_file_and_line(run, model_dir, edits_file, tmp_path):
    delta = tmp_path / "llama.wiseedit"
    assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    saved = snapshot(delta)
    again = run("edit", edits_file, "--delta", delta, *CPU)
    assert again.exit_code == 2
    lines = again.stderr.strip().splitlines()
    assert lines == [f"error: {edits_file}:{n}: id: {i!r} is already an edit of {delta}; give this edit an id of "
                     "its own (an edit without an id is named <file name>:<line>, or <file name>:<n> for the n-th "
                     "record of a JSON array)"
                     for n, i in ((1, "a"), (2, "b"), (3, "edits:3"))]
    assert snapshot(delta) == saved


def test_a_filesystem_error_is_one_sentence_not_an_internal_error(run, model_dir, edits_file, monkeypatch):
    import wiseedit.api

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/models/llama/model.safetensors")

    monkeypatch.setattr(wiseedit.api, "load_base", refused)
    result = run("edit", edits_file, "--model", model_dir, *CPU)
    assert result.exit_code == 3
    assert result.stderr.endswith("error: /models/llama/model.safetensors: Permission denied\n")
    assert "internal error" not in result.stderr


# -- a real method end to end: GRACE recalls, load shows it, --compare shows the base ---------------------


def test_grace_edit_is_recalled_and_load_compares_with_the_base(run, model_dir, edits_file, tmp_path):
    edited = run("edit", edits_file, "--model", model_dir, "--method", "grace", "--json", *CPU)
    assert edited.exit_code == 0, edited.output
    results = json.loads(edited.stdout)["results"]
    assert all(r["recalled"] for r in results)
    assert all(r["after"].strip().startswith(r["target"]) for r in results)

    delta = tmp_path / "llama.wiseedit"
    shown = run("load", "--model", model_dir, "--delta", delta, *CPU)
    assert shown.exit_code == 0, shown.output
    for fact in ("method", "grace", "edits", "base check", "✓", "entries"):
        assert fact in shown.stderr

    prompts = [r["prompt"] for r in results]
    loaded = run("load", "--delta", delta, "--json", "--compare", "--max-new-tokens", "3", *CPU,
                 *[arg for p in prompts for arg in ("--prompt", p)])
    assert loaded.exit_code == 0, loaded.output
    document = json.loads(loaded.stdout)
    assert document["method"] == "grace" and document["edits"] == 3 and document["base_check"] == "ok"
    assert document["summary"]["entries"] == 3
    for row, r in zip(document["generations"], results):
        assert row["prompt"] == r["prompt"]
        assert row["output"].strip().startswith(r["target"])  # the edited model
        assert not row["base_output"].strip().startswith(r["target"])  # the base model, delta detached


def test_load_without_delta_describes_the_base(run, model_dir):
    result = run("load", "--model", model_dir, "--json", "-p", "The capital of France is", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["delta"] is None and document["base_fingerprint"].startswith("sha256:")
    assert len(document["generations"]) == 1


def test_load_compare_needs_a_delta_and_prompts(run, model_dir):
    result = run("load", "--model", model_dir, "--compare", *CPU)
    assert result.exit_code == 2 and "pass --delta" in result.stderr


# -- merge-shards ---------------------------------------------------------------------------------------


def test_merge_shards_refuses_non_wise_deltas(run, model_dir, edits_file, tmp_path):
    assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    result = run("merge-shards", tmp_path / "llama.wiseedit", *CPU)
    assert result.exit_code == 2 and "only WISE deltas" in result.stderr


def test_merge_shards_merges_the_current_shard_then_has_nothing_to_merge(run, model_dir, edits_file, tmp_path):
    # one shard for the file's edits (the auto shard size of this tiny matrix is one edit)
    fast = ["--option", "n_iter=2", "--option", "num_templates=1", "--option", "save_freq=10"]
    edited = run("edit", edits_file, "--model", model_dir, "--method", "wise", *fast, *CPU)
    assert edited.exit_code == 0, edited.output
    delta = tmp_path / "llama.wiseedit"

    merged = run("merge-shards", delta, "--algorithm", "linear", "--json", *CPU)
    assert merged.exit_code == 0, merged.output
    document = json.loads(merged.stdout)
    assert document["merged_shards"] == 1
    assert document["summary"]["merged_memories"] == 1 and document["summary"]["pending_shards"] == 0
    saved = snapshot(delta)

    again = run("merge-shards", delta, *CPU)
    assert again.exit_code == 0 and "nothing to merge" in again.stderr
    assert snapshot(delta) == saved


@pytest.mark.parametrize("method", ["wise", "grace", "ft-l"])
def test_a_module_without_a_weight_matrix_is_one_sentence(run, model_dir, edits_file, tmp_path, method):
    result = run("edit", edits_file, "--model", model_dir, "--method", method, "--module", "model.layers.1.mlp", *CPU)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "error: module 'model.layers.1.mlp' is a LlamaMLP, not a layer with a weight matrix (nn.Linear or Conv1D, "
        "such as an FFN's down_proj); pick one of those")
    assert not (tmp_path / "llama.wiseedit").exists()


def test_saved_files_get_the_mode_the_umask_gives(run, model_dir, edits_file, tmp_path):
    old = os.umask(0o022)
    try:
        assert run("edit", edits_file, "--model", model_dir, "--method", "none", *CPU).exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "llama.wiseedit").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes  # safetensors alone wrote 0600


def _wiseedit(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "wiseedit.cli.app", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_reader_that_stops_early_ends_the_command_quietly(model_dir, tmp_path):
    process = _wiseedit("load", "--model", str(model_dir), "--json", *CPU, cwd=tmp_path)
    process.stdout.close()  # as `| head -0` would: the JSON has nowhere to go
    assert process.wait(timeout=120) == 141
    assert "error" not in process.stderr.read()


def test_sigterm_unwinds_like_ctrl_c(model_dir, edits_file, tmp_path):
    process = _wiseedit("edit", str(edits_file), "--model", str(model_dir), *CPU, cwd=tmp_path)
    while "loading model" not in process.stderr.readline():  # the handler is installed by then
        assert process.poll() is None, "the edit ended before it could be terminated"
    process.terminate()
    assert process.wait(timeout=120) == 143
    assert process.stderr.read().splitlines()[-1] == "error: terminated"
    # no delta, no temporary: only the (empty, hidden) writer lock file stays
    assert sorted(p.name for p in tmp_path.iterdir()) == [".llama.wiseedit.lock", "edits.jsonl", "llama"]
