"""``wiseedit eval``: every suite end to end, the figures of known cases, the output files, --fail-under,
resuming, reproducibility, auditing a delta and sharing blocks between processes (accelerate launch).

All on the tiny Llama of conftest.py, whose 1000-token tokenizer makes the targets below one token:
GRACE recalls them exactly (see test_baselines.py), the identity method ``none`` recalls nothing and
agrees with the unedited model everywhere (Loc = 1 exactly).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import shutil
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from wiseedit.cli import eval_cmd
from wiseedit.cli.app import app
from wiseedit.errors import BadInputError
from wiseedit.evaluation import runner as runner_module
from wiseedit.evaluation.checks import failures, parse_bars
from wiseedit.evaluation.report import VARYING_KEYS

ENV = {"HF_HUB_OFFLINE": "1"}
CPU = ["--device", "cpu"]
# One-token targets, each with a locality probe; the first also with a paraphrase.
EDITS = [
    {"id": "a", "prompt": "The capital of France is", "target": "Rome",
     "rephrase": ["The capital of France is the city of"],
     "locality": [{"prompt": "The sky is", "answer": "blue"}]},
    {"id": "b", "prompt": "Alice works as a nurse in", "target": "Paris",
     "locality": [{"prompt": "Water boils at", "answer": "one hundred degrees"}]},
    {"id": "c", "prompt": "Bob plays the", "target": "violin",
     "locality": [{"prompt": "She speaks", "answer": "German"}]},
]



@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke ``wiseedit ARGS`` in-process from tmp_path; returns the click Result (stdout, stderr apart)."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env=ENV)

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EDITS), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stable(document: dict) -> dict:
    """A results document without the keys that may differ between two identical runs."""
    return {k: v for k, v in document.items() if k not in VARYING_KEYS}


def rows_by_T(document: dict) -> dict:
    return {row["T"]: row for row in document["rows"]}


# -- help and usage -------------------------------------------------------------------------------------


def test_help_explains_itself_with_an_example(run):
    result = run("eval", "--help")
    assert result.exit_code == 0 and eval_cmd.EXAMPLE in result.stdout
    assert "eval" in run("--help").stdout


@pytest.mark.parametrize("args, message", [
    (["--fail-under", "accuracy=0.9"], "unknown metric 'accuracy'"),
    (["--fail-under", "rel=high"], "is not a number"),
    (["--fail-under", "rel=1.01"], "--fail-under rel: the bar must be a number from 0 to 1, got '1.01'"),
    (["--fail-under", "loc=0.9,gen=-0.1"], "--fail-under gen: the bar must be a number from 0 to 1, got '-0.1'"),
    (["--fail-under", "ood=nan"], "--fail-under ood: the bar must be a number from 0 to 1, got 'nan'"),
    (["--method", "grace,rome"], "unknown method 'rome'"),
    (["-T", "1,ten"], "-T expects whole numbers"),
    (["-T", "0"], "positive whole numbers"),
    (["--plot"], "pass --output-path"),
    (["--suite", "no-such-suite"], "neither a suite"),
    (["--method", "grace,none", "--option", "eps=0.2"], "ambiguous with several methods"),
])
def test_bad_usage_exits_2_before_loading_anything(run, args, message):
    result = run("eval", "--model", "no-such-model", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_method_that_cannot_be_created_stops_the_run_before_any_block(run, model_dir, suite_file):
    result = run("eval", "--model", model_dir, "--suite", suite_file, "-T", "1", "--method", "none,recipe", *CPU)
    assert result.exit_code == 2
    assert "RECIPE needs a meta-trained checkpoint" in result.stderr  # refused before the model loads
    assert "lifelong protocol" not in result.stderr  # no table: nothing was evaluated


def test_delta_mode_refuses_suite_options(run, tmp_path):
    result = run("eval", "--delta", tmp_path, "--method", "grace", "-T", "1")
    assert result.exit_code == 2 and "drop --method, -T" in result.stderr


def test_option_prefixes_pick_the_method():
    assert eval_cmd.method_options(["eps=0.2"], ["grace"]) == {"grace": {"eps": 0.2}}
    assert eval_cmd.method_options(["grace:eps=0.2", "ft-l:lr=0.01"], ["grace", "ft-l"]) == {
        "grace": {"eps": 0.2}, "ft-l": {"lr": 0.01}}
    with pytest.raises(BadInputError, match="not among the methods"):
        eval_cmd.method_options(["wise:n_iter=3"], ["grace"])


def test_bars_parse_and_check():
    assert parse_bars("rel=0.9, loc=0.99") == {"rel": 0.9, "loc": 0.99}
    assert parse_bars(None) == {}
    with pytest.raises(BadInputError, match="given twice"):
        parse_bars("rel=0.9,rel=0.8")
    rows = [{"method": "grace", "T": 10, "rel": 0.85, "gen": None, "loc": 1.0}]
    assert failures(rows, {"rel": 0.9, "loc": 0.99, "gen": 0.5}) == [
        "grace T=10: rel = 0.8500 is below the bar 0.9", "grace T=10: gen was not measured on this suite (bar 0.5)"]


# -- every suite, end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["world", "zsre", "counterfact", "hallucination", "temporal", "file"])
def test_every_suite_runs_and_the_identity_method_keeps_loc_exactly(run, model_dir, suite_file, suite):
    name = suite_file if suite == "file" else suite
    result = run("eval", "--model", model_dir, "--suite", name, "--limit", 3, "-T", "1,3", "--method", "none",
                 "--json", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    rows = rows_by_T(document)
    assert sorted(rows) == [1, 3] and (rows[1]["blocks"], rows[3]["blocks"]) == (3, 1)
    for row in rows.values():
        assert row["method"] == "none" and row["edits"] == 3
        assert row["loc"] == 1.0  # nothing changed: every locality prediction is the unedited one
        assert 0.0 <= row["rel"] <= 1.0 and 0.0 <= row["rel_generated"] <= 1.0
        assert (row["ppl"] is not None) == (suite == "hallucination")
        assert (row["ood"] is not None) == (suite == "temporal")
    if suite == "hallucination":
        assert rows[1]["ppl"] > 1.0  # a random model is far from the target text
    assert document["data"]["edits"] == 3 and document["config"]["suite"] == str(name)
    assert "lifelong protocol" in result.stderr and "Rel" in result.stderr


def test_blocks_are_whole_and_the_log_says_what_a_T_leaves_out(run, model_dir, suite_file):
    from wiseedit.evaluation.protocol import blocks_of, coverage_note

    assert [len(b) for b in blocks_of(list(range(7)), 3)] == [3, 3]  # the shorter remainder is left out
    assert [len(b) for b in blocks_of(list(range(2)), 3)] == [2]  # fewer edits than T: one block
    assert coverage_note(6, 3) is None
    assert coverage_note(7, 3) == "T=3: 7 edits make 2 block(s) of 3; the last 1 are not measured at this T"
    assert coverage_note(2, 3) == "T=3: only 2 edit(s), measured as one block of 2"
    result = run("eval", "--model", model_dir, "--suite", suite_file, "--limit", 3, "-T", "1,2", "--method",
                 "none", "--json", *CPU)
    assert result.exit_code == 0, result.output
    assert rows_by_T(json.loads(result.stdout))[2]["edits"] == 2
    assert coverage_note(3, 2) in result.stderr and "T=1" not in result.stderr


# -- figures, outputs, gates ----------------------------------------------------------------------------


def test_grace_recalls_and_fail_under_names_the_failing_figure(run, model_dir, suite_file, tmp_path):
    out = tmp_path / "results"
    result = run("eval", "--model", model_dir, "--suite", suite_file, "-T", "1,3", "--method", "grace,none",
                 "--output-path", out, "--log-samples", "--fail-under", "rel=1", "--json", *CPU)
    assert result.exit_code == 1, result.output
    assert "error: none T=1: rel = 0." in result.stderr and "grace T=1: rel" not in result.stderr
    document = json.loads(result.stdout)  # the figures are printed (and written) before the gate
    grace = {r["T"]: r for r in document["rows"] if r["method"] == "grace"}
    none = {r["T"]: r for r in document["rows"] if r["method"] == "none"}
    assert grace[1]["rel"] == grace[3]["rel"] == 1.0  # one-token targets: GRACE recalls them all
    assert grace[1]["rel_generated"] == 1.0
    assert none[1]["rel"] < 1.0 and none[1]["loc"] == none[3]["loc"] == 1.0

    written = json.loads((out / "results.json").read_text())
    assert stable(written) == stable({k: v for k, v in document.items() if k != "rows"})
    options = written["config"].pop("options")
    assert written["config"] == {"suite": str(suite_file), "methods": ["grace", "none"], "options_given": {},
                                 "T": [1, 3], "limit": None, "seed": None, "mode": "lifelong",
                                 "chat_template": "auto"}
    assert options["none"] == {} and options["grace"]["module"] == "model.layers.4.mlp.down_proj"
    assert set(written["model"]) == {"name", "fingerprint", "model_type", "dtype", "chat_template"}
    assert written["model"]["chat_template"] is None  # the tiny tokenizer has none: prompts went in raw
    assert written["model"]["model_type"] == "llama" and written["model"]["fingerprint"].startswith("sha256:")
    assert written["data"]["sha256"].startswith("sha256:") and written["data"]["edits"] == 3
    assert set(written["versions"]) == {"wiseedit", "torch", "transformers"}
    assert [b["block"] for b in written["metrics"]["grace"]["1"]["per_block"]] == [0, 1, 2]
    assert len(written["timing"]["grace"]["1"]["per_block"]) == 3

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * (3 + 3)  # methods x (T=1: 3 blocks of 1, T=3: 1 block of 3)
    first = samples[0]
    assert list(first)[:4] == ["id", "method", "T", "block"]
    assert (first["id"], first["method"], first["T"], first["block"], first["rel"]) == ("a", "grace", 1, 0, 1.0)
    assert len(first["gen"]) == 1 and len(first["loc"]) == 1


def test_each_edit_mode_is_labelled(run, model_dir, suite_file):
    result = run("eval", "--model", model_dir, "--suite", suite_file, "-T", "3", "--method", "grace",
                 "--each-edit", "--json", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["mode"] == "each-edit" and document["rows"][0]["rel"] == 1.0
    assert "right after each edit" in result.stderr


def test_plot_writes_a_png(run, model_dir, suite_file, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plotted"
    result = run("eval", "--model", model_dir, "--suite", suite_file, "-T", "1,3", "--method", "none",
                 "--output-path", out, "--plot", *CPU)
    assert result.exit_code == 0, result.output
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = run("eval", "--model", "m", "--output-path", tmp_path / "o", "--plot")
    assert result.exit_code == 2
    assert "--plot needs matplotlib: pip install 'wiseedit[plot]'" in result.stderr


# -- reproducibility and resuming -----------------------------------------------------------------------


def test_two_identical_runs_give_identical_results_apart_from_date_and_timing(run, model_dir, suite_file,
                                                                               tmp_path):
    args = ["eval", "--model", model_dir, "--suite", suite_file, "-T", "1,3", "--method", "grace,ft-l",
            "--seed", 3, "--option", "ft-l:lr=0.005", *CPU]
    assert run(*args, "--output-path", tmp_path / "one").exit_code == 0
    assert run(*args, "--output-path", tmp_path / "two").exit_code == 0
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert stable(one) == stable(two)
    assert one["config"]["options_given"] == {"ft-l": {"lr": 0.005}} and one["config"]["seed"] == 3
    assert one["config"]["options"]["ft-l"]["lr"] == 0.005 and one["config"]["options"]["grace"]["seed"] == 3


def test_a_rerun_resumes_and_skips_the_finished_blocks(run, model_dir, suite_file, tmp_path, monkeypatch):
    out = tmp_path / "resumable"
    base = ["eval", "--model", model_dir, "--suite", suite_file, "--method", "grace", "--seed", 1, *CPU]
    args = [*base, "-T", "1,3", "--output-path", out]
    assert run(*args).exit_code == 0
    first = json.loads((out / "results.json").read_text())
    blocks = out / "blocks.jsonl"
    lines = blocks.read_text().splitlines()
    assert len(lines) == 4  # T=1: 3 blocks, T=3: 1 block
    # a run killed during its 2nd block, while writing the line of its 3rd: line 2 lost, line 3 torn
    blocks.write_text(lines[0] + "\n" + lines[2] + "\n" + lines[3] + "\n" + lines[1][:40])

    calls = []
    real = runner_module.evaluate_block

    def counted(*a, **k):
        calls.append((a[2], a[6], a[7]))  # method, T, block
        return real(*a, **k)

    monkeypatch.setattr(runner_module, "evaluate_block", counted)
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert calls == [("grace", 1, 1)] and "resuming: 3 of 4 blocks" in result.stderr
    assert stable(json.loads((out / "results.json").read_text())) == stable(first)

    calls.clear()
    assert run(*args).exit_code == 0 and calls == []  # everything done: nothing is redone

    changed = run(*base, "-T", "1", "--output-path", out)  # another config, same folder
    assert changed.exit_code == 2 and "config (T)" in changed.stderr and "--force" in changed.stderr
    assert run(*base, "-T", "1", "--output-path", out, "--force").exit_code == 0
    assert json.loads((out / "results.json").read_text())["config"]["T"] == [1]


# -- auditing a saved delta -----------------------------------------------------------------------------


def test_a_saved_delta_is_evaluated_on_its_audit_log(run, model_dir, suite_file, tmp_path):
    assert run("edit", suite_file, "--model", model_dir, "--method", "grace", "--out", tmp_path / "d",
               *CPU).exit_code == 0
    result = run("eval", "--delta", tmp_path / "d", "--json", "--output-path", tmp_path / "audit",
                 "--fail-under", "rel=1.0", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    (row,) = document["rows"]
    assert (row["method"], row["T"], row["blocks"], row["edits"]) == ("grace", 3, 1, 3)
    assert row["rel"] == 1.0 and 0.0 <= row["loc"] <= 1.0 and row["gen"] is not None
    assert row["seconds_per_edit"] is None  # nothing is edited while auditing
    assert document["config"]["mode"] == "delta" and document["config"]["edits"] == 3
    assert document["config"]["options"]["grace"]["eps"] == 0.1  # the delta's own settings
    assert (tmp_path / "audit" / "results.json").is_file()

    assert run("edit", suite_file, "--model", model_dir, "--method", "none", "--out", tmp_path / "n",
               *CPU).exit_code == 0
    none = json.loads(run("eval", "--delta", tmp_path / "n", "--json", *CPU).stdout)["rows"][0]
    assert none["loc"] == 1.0 and none["method"] == "none"


@pytest.mark.parametrize("method, given", [("wise", {"n_iter": 2, "num_templates": 1}), ("grace", {"eps": 0.3}),
                                           ("ft-l", {"n_iter": 2, "layer": 2}), ("wise-retrieve", {"n_iter": 2})])
def test_results_record_every_resolved_setting_of_each_method(run, model_dir, suite_file, tmp_path, method, given):
    """config.options holds the method's whole configuration after defaults and presets, so that a
    results.json says what ran (it held {} unless --option was given, and then only those keys)."""
    args = [f"--option={key}={value}" for key, value in given.items()]
    result = run("eval", "--model", model_dir, "--suite", suite_file, "--method", method, "-T", "3", *args,
                 "--seed", 5, "-o", tmp_path / "out", *CPU)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    recorded = config["options"][method]
    assert config["options_given"] == {method: given}

    from wiseedit.registry import method_class
    from wiseedit.models import load_base

    base = load_base(str(model_dir), device="cpu")
    direct = method_class(method).create(base.model, base.tokenizer, {**given, "seed": 5}
                                         if method != "ft-l" else given)
    assert recorded == direct.settings()
    fields = set(recorded) - {"module", "layer"}
    assert fields and all(recorded[k] == v for k, v in given.items() if k != "layer")
    assert recorded["module"] == f"model.layers.{given.get('layer', 4)}.mlp.down_proj"
    if method.startswith("wise"):  # the preset's values, resolved: none left as None
        assert all(recorded[k] is not None for k in ("n_iter", "lr", "act_ratio", "alpha", "beta", "gamma",
                                                     "pooling", "rehearse"))
        assert recorded["seed"] == 5 and recorded["retrieve"] is (method == "wise-retrieve")


# -- several processes ----------------------------------------------------------------------------------


def test_accelerate_launch_shares_blocks_and_gives_the_same_results(run, model_dir, suite_file, tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    args = ["eval", "--model", model_dir, "--suite", suite_file, "--limit", 2, "-T", "1,2", "--method", "grace",
            "--seed", 5, *CPU]
    assert run(*args, "--output-path", tmp_path / "single").exit_code == 0
    # --multi_gpu is accelerate's torchrun launcher; on a machine without GPUs every process runs on the
    # CPU (gloo). (--cpu would use accelerate's plain launcher, which starts one process without MPI.)
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
              "-m", "wiseedit.cli.app"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *map(str, args), "--output-path", str(tmp_path / "multi")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    multi = tmp_path / "multi"
    assert sorted(p.name for p in multi.glob("blocks*.jsonl")) == ["blocks.rank0.jsonl", "blocks.rank1.jsonl"]
    assert "2 processes share 3 blocks" in done.stderr
    single_doc, multi_doc = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("single", "multi"))
    assert stable(multi_doc) == stable(single_doc)
    assert multi_doc["metrics"]["grace"]["1"]["rel"] == 1.0
