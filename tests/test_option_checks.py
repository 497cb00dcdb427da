"""``EditingMethod.check_options``: every method refuses, before any model is loaded, the option values its
``create`` would refuse or crash on later, with one sentence naming the option and the value."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

from dataclasses import fields

import pytest
from typer.testing import CliRunner

from wiseedit.baselines.ft_l import FineTuneConfig
from wiseedit.baselines.grace import GraceConfig
from wiseedit.cli.app import app
from wiseedit.errors import BadInputError
from wiseedit.evaluation.runner import EvalConfig
from wiseedit.registry import METHOD_NAMES, method_class
from wiseedit.wise.config import WiseConfig

NAN, INF = float("nan"), float("inf")

BAD = [
    # -- WISE (both variants share WiseConfig)
    ("wise", {"n_iter": "abc"}, "n_iter"),
    ("wise", {"n_iter": 0}, "n_iter"),
    ("wise", {"n_iter": 30.0}, "n_iter"),
    ("wise", {"save_freq": 0}, "save_freq"),  # ZeroDivisionError at the first edit before the check
    ("wise", {"merge_freq": -5}, "merge_freq"),
    ("wise", {"merge_algorithm": "bogus"}, "merge_algorithm"),
    ("wise", {"preset": "bogus"}, "preset"),  # was silently taken as "reference"
    ("wise", {"pooling": "max"}, "pooling"),
    ("wise", {"layer": 2.5}, "whole number"),
    ("wise", {"layer": -1}, "layer"),
    ("wise", {"layer": True}, "layer"),
    ("wise", {"mask_ratio": 1.5}, "mask_ratio"),
    ("wise", {"mask_ratio": 0}, "mask_ratio"),
    ("wise", {"density": 0}, "density"),
    ("wise", {"merge_keep_weight": 1.2}, "merge_keep_weight"),
    ("wise", {"act_ratio": 0}, "act_ratio"),
    ("wise", {"lr": -1}, "lr"),
    ("wise", {"lr": INF}, "lr"),
    ("wise", {"weight_decay": NAN}, "weight_decay"),
    ("wise", {"alpha": -0.1}, "alpha"),
    ("wise", {"gamma": "big"}, "gamma"),
    ("wise", {"norm_constraint": 0}, "norm_constraint"),
    ("wise", {"early_stop_loss": -1}, "early_stop_loss"),
    ("wise", {"num_templates": -1}, "num_templates"),
    ("wise", {"edits_per_step": 0}, "edits_per_step"),
    ("wise", {"rehearse": 1.5}, "rehearse"),
    ("wise", {"retrieve": "yes"}, "retrieve"),
    ("wise", {"replay": 1}, "replay"),
    ("wise", {"cache_activations": None}, "cache_activations"),
    ("wise", {"seed": "abc"}, "seed"),
    ("wise", {"seed": False}, "seed"),
    ("wise", {"module": ""}, "module"),
    ("wise", {"module": "model.layers.{i}.mlp.down_proj"}, "module"),  # {i} without a layer
    ("wise", {"module": "model.layers.3.mlp.down_proj", "layer": 2}, "module"),  # a layer with nowhere to go
    ("wise", {"module": "model.layers.{j}.mlp"}, "module"),
    ("wise", {"bogus": 1}, "bogus"),
    ("wise-retrieve", {"save_freq": 0}, "save_freq"),
    ("wise-retrieve", {"rehearse": -1}, "rehearse"),
    # -- GRACE
    ("grace", {"eps": -1}, "eps"),
    ("grace", {"eps": 0}, "eps"),
    ("grace", {"n_iter": "abc"}, "n_iter"),
    ("grace", {"n_iter": 0}, "n_iter"),
    ("grace", {"lr": 0}, "lr"),
    ("grace", {"eps_unit": "meters"}, "eps_unit"),
    ("grace", {"replacement": "some"}, "replacement"),
    ("grace", {"stop_loss": -1}, "stop_loss"),
    ("grace", {"plateau": "x"}, "plateau"),
    ("grace", {"seed": 2**64}, "seed"),  # torch cannot seed with it
    ("grace", {"layer": 2.5}, "layer"),
    ("grace", {"preset": "bogus"}, "preset"),
    ("grace", {"preset": ["paper"]}, "preset"),
    ("grace", {"epsilon": 1}, "epsilon"),
    # -- FT-L
    ("ft-l", {"lr": "abc"}, "lr"),
    ("ft-l", {"lr": -1e-3}, "lr"),
    ("ft-l", {"n_iter": 2.5}, "n_iter"),
    ("ft-l", {"weight_decay": -1}, "weight_decay"),
    ("ft-l", {"norm_constraint": 0}, "norm_constraint"),
    ("ft-l", {"stop_loss": True}, "stop_loss"),
    ("ft-l", {"module": 3}, "module"),
    ("ft-l", {"seed": 1}, "seed"),
    # -- RECIPE
    ("recipe", {}, "checkpoint"),
    ("recipe", {"checkpoint": None}, "checkpoint"),
    ("recipe", {"checkpoint": 3}, "checkpoint"),
    ("recipe", {"checkpoint": ""}, "checkpoint"),
    ("recipe", {"checkpoint": "x", "query_cache_size": -1}, "query_cache_size"),  # was KeyError at inference
    ("recipe", {"checkpoint": "x", "query_cache_size": 2.5}, "query_cache_size"),
    ("recipe", {"checkpoint": "x", "index": "bogus"}, "index"),
    ("recipe", {"checkpoint": "x", "sentinel_offset": True}, "sentinel_offset"),
    ("recipe", {"checkpoint": "x", "sentinel_offset": "high"}, "sentinel_offset"),
    ("recipe", {"checkpoint": "x", "bogus": 1}, "bogus"),
    ("recipe", {"checkpoint": "x", "gate": "knn"}, "gate"),
    ("recipe", {"checkpoint": "x", "gate": None}, "gate"),
    ("recipe", {"checkpoint": "x", "gate": "cosine", "cosine_ratio": 0}, "cosine_ratio"),
    ("recipe", {"checkpoint": "x", "cosine_ratio": "0.9"}, "cosine_ratio"),
    ("recipe", {"checkpoint": "x", "cosine_ratio": float("inf")}, "cosine_ratio"),
    # -- none
    ("none", {"seed": 1}, "seed"),
    ("none", {"n_iter": 3}, "n_iter"),
]


@pytest.mark.parametrize("method, options, named", BAD, ids=[f"{m}-{o}" for m, o, _ in BAD])
def test_bad_option_values_are_refused_in_one_sentence(method, options, named):
    with pytest.raises(BadInputError) as error:
        method_class(method).check_options(dict(options))
    message = str(error.value)
    assert named in message
    assert "\n" not in message
    if "unknown" in message or "takes no options" in message or "needs a meta-trained" in message:
        return  # a key that should not be there, or one missing: no value to show
    value = options[named] if named in options else options[next(iter(options))]
    assert repr(value) in message, message


GOOD = [
    ("wise", {}),
    ("wise", {"n_iter": 30, "layer": 1, "seed": 3, "retrieve": True}),
    ("wise", {"preset": "reference", "pooling": "mean", "merge_algorithm": "dare", "density": 1,
              "mask_ratio": 1.0, "merge_keep_weight": 0, "save_freq": 5, "merge_freq": 7}),
    ("wise", {"module": "model.layers.{i}.mlp.down_proj", "layer": 0}),
    ("wise", {"module": "model.layers.1.mlp.down_proj", "n_iter": None, "lr": 2, "norm_constraint": INF}),
    ("wise", {"edits_per_step": 4, "rehearse": 0, "num_templates": 0, "seed": -7, "replay": True}),
    ("wise-retrieve", {"seed": 0, "save_freq": 1, "merge_freq": 100000}),
    ("grace", {}),
    ("grace", {"preset": "paper"}),
    ("grace", {"eps": 1, "eps_unit": "absolute", "n_iter": 5, "lr": 0.5, "stop_loss": None, "plateau": 0,
               "value_init": "cold", "replacement": "all", "seed": 0, "layer": 1}),
    ("ft-l", {}),
    ("ft-l", {"preset": "paper", "lr": 5e-3, "n_iter": 10, "norm_constraint": 5e-4, "stop_loss": None}),
    ("recipe", {"checkpoint": "x"}),
    ("recipe", {"checkpoint": "x", "index": "hnsw", "query_cache_size": 0, "gate": "sentinel", "sentinel_offset": -1}),
    ("recipe", {"checkpoint": "x", "gate": "cosine", "cosine_ratio": 1.2, "sentinel_offset": 2}),
    ("none", {}),
]


@pytest.mark.parametrize("method, options", GOOD, ids=[f"{m}-{o}" for m, o in GOOD])
def test_what_create_accepts_passes(method, options):
    method_class(method).check_options(dict(options))


def test_every_method_checks_its_options():
    for name in METHOD_NAMES:
        method_class(name).check_options({"checkpoint": "x"} if name == "recipe" else {})


@pytest.mark.parametrize("config", [WiseConfig, GraceConfig, FineTuneConfig])
def test_every_field_is_checked(config):
    """A list is no field's value: each field refuses it by name (a field without a check would not)."""
    for f in fields(config):
        with pytest.raises((BadInputError, ValueError), match=f.name):
            config.from_options({f.name: []})


def test_wise_defaults_and_round_trip_pass_the_check():
    config = WiseConfig.from_options({"n_iter": 30, "layer": 1})
    assert WiseConfig.from_options(config.to_dict()) == config


def test_eval_config_checks_each_method_with_the_run_seed():
    with pytest.raises(BadInputError, match="eps must be"):
        EvalConfig(methods=("grace",), options={"grace": {"eps": -1}})
    with pytest.raises(BadInputError, match="save_freq"):
        EvalConfig(methods=("wise", "grace"), options={"wise": {"save_freq": 0}}, seed=3)
    EvalConfig(methods=("wise", "wise-retrieve", "grace", "none"), seed=3)  # the seed is a valid option


# -- end to end: refused before the model loads, nothing written -------------------------------------------


@pytest.fixture
def never_load(monkeypatch):
    import wiseedit.api
    import wiseedit.models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    for module in (wiseedit.api, wiseedit.models):
        monkeypatch.setattr(module, "load_base", never)


@pytest.mark.parametrize("args, named", [
    (["--option", "n_iter=abc"], "n_iter"),
    (["--option", "save_freq=0"], "save_freq"),
    (["--method", "grace", "--option", "eps=-1"], "eps"),
    (["--method", "none", "--seed", "1"], "seed"),
])
def test_cli_refuses_a_bad_option_before_loading_the_model(model_dir, edits_file, tmp_path, monkeypatch,
                                                          never_load, args, named):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner(env={"HF_HUB_OFFLINE": "1"}).invoke(
        app, ["edit", str(edits_file), "--model", str(model_dir), *args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_api_edit_refuses_a_bad_option_before_loading_the_model(model_dir, edits_file, tmp_path, never_load):
    import wiseedit.api

    out = tmp_path / "out.wiseedit"
    with pytest.raises(BadInputError, match="invalid WISE option: layer must be a whole number"):
        wiseedit.api.edit(str(model_dir), edits_file, method="wise", options={"layer": 2.5}, out=out,
                          device="cpu")
    with pytest.raises(BadInputError, match="invalid RECIPE option: query_cache_size"):
        wiseedit.api.edit(str(model_dir), edits_file, method="recipe", options={"checkpoint": "x",
                                                                                "query_cache_size": -1}, out=out)
    assert not out.exists() and not (tmp_path / "llama.wiseedit").exists()
