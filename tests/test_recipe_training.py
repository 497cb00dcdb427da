"""RECIPE's meta-training settings and checkpoints: the default configuration is the best measured one,
``--preset paper`` the paper's, checkpoints of earlier versions still load, and only the newest
checkpoint of a run carries the state that resuming needs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import shutil
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from wiseedit.cli.app import app
from wiseedit.errors import BadInputError
from wiseedit.recipe.checkpoint import META_FILE, WEIGHTS_FILE, list_checkpoints, load_networks
from wiseedit.recipe.config import RecipeConfig
from wiseedit.recipe.training.run import fresh_config
from wiseedit.recipe.training.settings import TrainSettings

# docs/results.md's best row (RECIPE on the world model, T = 1000 Rel / Gen / Loc .9765 / .9606 / .9945)
BEST_ROW = ["--prompt-input", "pooled", "--key-init", "mean", "--encoder-lr", "1e-5", "--edit-margin", "10",
            "--batches", "lookalike", "--lr", "1e-4", "--ema-decay", "0.9995", "--steps", "5000"]
# the official code's settings (RecipeConfig fields)
PAPER = {"encoder": "roberta-base", "d_r": 4096, "prompt_tokens": 3, "prompt_input": "key", "key_init": "random",
         "sentinel_tokens": 10, "batch_size": 8, "batches": "random", "lr": 1e-5, "encoder_lr": None,
         "margin": 1.2, "edit_margin": None, "ema_decay": 0.0, "bank_refresh": 0}


def _settings_of(monkeypatch, *flags) -> TrainSettings:
    """The TrainSettings that ``wiseedit train-recipe --model world --data world-train-x8-invented FLAGS``
    hands to the library (which is stopped there)."""
    seen = []

    def stop(model, data, out, settings, **_):
        seen.append(settings)
        raise BadInputError("stopped by the test")

    monkeypatch.setattr("wiseedit.recipe.training.run.train", stop)
    result = CliRunner().invoke(app, ["train-recipe", "--model", "world", "--data", "world-train-x8-invented",
                                      *flags])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    return seen[0]


def test_the_default_configuration_is_the_best_measured_one(monkeypatch):
    default, best = _settings_of(monkeypatch), _settings_of(monkeypatch, *BEST_ROW)
    assert fresh_config(default) == fresh_config(best) == RecipeConfig() == RecipeConfig.preset("default")
    assert default.steps == best.steps == 5000 and default.seed is None  # seed 0, as the row's run
    assert fresh_config(default).encoder == "all-MiniLM-L6-v2" and fresh_config(default).d_r == 512


def test_preset_paper_is_the_papers_configuration(monkeypatch):
    config = fresh_config(_settings_of(monkeypatch, "--preset", "paper"))
    assert {name: getattr(config, name) for name in PAPER} == PAPER
    # a flag given with the preset still wins
    assert fresh_config(_settings_of(monkeypatch, "--preset", "paper", "--lr", "1e-3")).lr == 1e-3


@pytest.mark.parametrize("flags, message", [
    (["--batches", "lookalike-person"], "Invalid value for '--batches'"),  # removed: it lost every comparison
    (["--lr", "0"], "lr must be positive, got 0.0"),
    (["--edit-margin", "0.5"], "edit_margin must be at least 1"),
])
def test_bad_settings_are_refused_before_anything_is_loaded(monkeypatch, flags, message):
    monkeypatch.setattr("wiseedit.recipe.training.run.train", lambda *a, **k: pytest.fail("train was called"))
    result = CliRunner().invoke(app, ["train-recipe", "--model", "world", "--data", "world-train", *flags])
    assert result.exit_code == 2 and message in result.output, result.output


def test_settings_check_themselves():
    with pytest.raises(BadInputError, match="steps must be at least 1, got 0"):
        TrainSettings(steps=0)
    with pytest.raises(BadInputError, match="unknown RECIPE preset 'tiny'"):
        TrainSettings(preset="tiny")
    with pytest.raises(BadInputError, match="unknown RECIPE batches 'lookalike-person'"):
        TrainSettings(batches="lookalike-person")
    assert TrainSettings(lr=1e-3, seed=2).config_fields() == {"lr": 1e-3}
