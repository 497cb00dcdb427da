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
from safetensors.torch import load_file
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


# -- checkpoints ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A tiny GPT-2 (untrained: these tests are about files and exact resuming), the test world of
    test_recipe.py and a tiny BERT encoder factory."""
    from test_recipe import _tiny_encoder, _world

    from wiseedit.testing.tiny import tiny_model

    world = _world()
    llm = tiny_model("gpt2", world.tokenizer, layers=2, hidden=32).eval()
    return world, llm, lambda: _tiny_encoder(world.tokenizer)


def _config(**changes):
    from test_recipe import TEST_CONFIG

    return replace(TEST_CONFIG, checkpoint_every=1, keep_checkpoints=0, **changes)


def _train(tiny, out, steps, **changes):
    from wiseedit.recipe.training.loop import meta_train

    world, llm, encoder = tiny
    return meta_train(llm, world.tokenizer, encoder(), world.train[:24], _config(**changes), out, steps=steps)


@pytest.mark.parametrize("changes", [{}, {"ema_decay": 0.5, "bank_refresh": 2}])
def test_only_the_newest_checkpoint_keeps_the_training_state(tiny, tmp_path, changes):
    from wiseedit.recipe.training.checkpoint import TRAINING_FILE

    whole = _train(tiny, tmp_path / "a", 4, **changes)
    found = list_checkpoints(tmp_path / "a")
    assert [c.name for c in found] == [f"step-0000000{s}" for s in (1, 2, 3, 4)]
    assert [(c / TRAINING_FILE).is_file() for c in found] == [False, False, False, True]
    for checkpoint in found:  # every checkpoint keeps what editing reads
        assert {p.name for p in checkpoint.iterdir()} >= {META_FILE, WEIGHTS_FILE, "encoder_tokenizer"}
        load_networks(checkpoint)
    # resuming from the newest continues exactly as one run; an older one cannot be resumed from
    _train(tiny, tmp_path / "b", 2, **changes)
    resumed = _train(tiny, tmp_path / "b", 4, **changes)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[2:]]
    for name, value in whole.networks.state_dict().items():
        assert torch.equal(value, resumed.networks.state_dict()[name]), name
    shutil.rmtree(found[-1])
    with pytest.raises(BadInputError, match="holds no training state to resume from .* pass --restart"):
        _train(tiny, tmp_path / "a", 5, **changes)


def test_the_training_state_keeps_only_rows_that_carry_information(tiny, tmp_path):
    from safetensors import safe_open

    from wiseedit.recipe.training.checkpoint import TRAINING_FILE, training_tensors

    run = _train(tiny, tmp_path, 2, ema_decay=0.5)
    state, _ = training_tensors(run.checkpoint)
    weights = load_file(str(run.checkpoint / WEIGHTS_FILE))
    embeddings = "encoder.model.embeddings.word_embeddings.weight"
    with safe_open(str(run.checkpoint / TRAINING_FILE), framework="pt") as handle:
        stored = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
    vocab = weights[embeddings].shape[0]
    # two steps read a few dozen of the tokens: the rows of the others are zero moments, trained = average
    moved = int((state["trained." + embeddings] != weights[embeddings]).any(1).sum())
    assert 0 < moved < vocab // 4 and stored["trained." + embeddings][0] == moved
    moment = next(k for k in state if k.startswith("state.") and k.endswith(".exp_avg")
                  and state[k].shape == weights[embeddings].shape)
    assert stored[moment][0] == int(state[moment].any(1).sum()) < vocab // 4
    head = "knowledge_head.proj.weight"  # trained everywhere: stored whole
    assert stored["trained." + head] == list(weights[head].shape)


@pytest.mark.parametrize("seed", range(5))
def test_compacted_rows_come_back_bit_for_bit(seed):
    from wiseedit.recipe import rows

    generator = torch.Generator().manual_seed(seed)
    shape = (int(torch.randint(2, 40, (), generator=generator)), 3, 2)
    dense = torch.randn(shape, generator=generator)
    reference = dense.clone()
    keep = torch.rand(shape[0], generator=generator) < 0.3
    dense[~keep] = 0.0
    dense[0, 0, 0] = -0.0  # a signed zero differs from zero by its bits
    dense[-1, 1, 1] = float("nan")
    reference[keep] += 1.0
    tensors = {"zeros": dense, "against": reference.clone(), "vector": torch.randn(7, generator=generator),
               "ints": torch.zeros(shape[0], 4, dtype=torch.int64)}
    references = {"against": dense}
    compacted, metadata = rows.compact(tensors, references)
    back = rows.expand(compacted, metadata, references)
    assert back.keys() == tensors.keys()
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and torch.equal(_bits(back[name]), _bits(value)), name
    assert compacted["zeros"].shape[0] == int(keep.sum()) + (not keep[0]) + (not keep[-1])
    assert compacted["ints"].shape[0] == 0 and "vector:rows" not in compacted


def _bits(tensor):
    return tensor.view(torch.int32) if tensor.dtype == torch.float32 else tensor


def test_a_checkpoint_in_the_earlier_layout_loads_and_resumes(tiny, tmp_path):
    # the layout before: every checkpoint kept its whole training state, dense, and configs written
    # before a field existed lack it
    from safetensors.torch import save_file

    from wiseedit.recipe.training.checkpoint import TRAINING_FILE, training_tensors

    whole = _train(tiny, tmp_path / "a", 3, ema_decay=0.5)
    _train(tiny, tmp_path / "b", 2, ema_decay=0.5)
    older, newest = list_checkpoints(tmp_path / "b")
    state, groups = training_tensors(newest)
    for checkpoint in (older, newest):
        save_file(state, str(checkpoint / TRAINING_FILE), {"param_groups": json.dumps(groups)})
    resumed = _train(tiny, tmp_path / "b", 3, ema_decay=0.5)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[2:]]
    assert not (newest / TRAINING_FILE).exists()  # the older ones drop theirs once a newer one is written
    # a config written before prompt_input, key_init, encoder_lr, edit_margin, batches existed: the paper's
    meta_file = older / META_FILE
    meta = json.loads(meta_file.read_text())
    for name in ("prompt_input", "key_init", "encoder_lr", "edit_margin", "batches", "bank_refresh"):
        del meta["config"][name]
    meta_file.write_text(json.dumps(meta))
    networks = load_networks(older)[0]
    assert (networks.config.prompt_input, networks.config.key_init, networks.config.batches) == ("key", "random",
                                                                                                "random")
    assert (networks.config.encoder_lr, networks.config.edit_margin, networks.config.ema_decay) == (None, None, 0.5)


def test_a_checkpoint_trained_with_a_removed_switch_edits_but_does_not_resume(tiny, tmp_path):
    run = _train(tiny, tmp_path, 1, batches="lookalike")
    meta_file = run.checkpoint / META_FILE
    meta = json.loads(meta_file.read_text())
    meta["config"]["batches"] = "lookalike-person"  # written by an earlier version
    meta_file.write_text(json.dumps(meta))
    networks = load_networks(run.checkpoint)[0]
    assert networks.config.batches == "lookalike-person"
    for name, value in run.networks.state_dict().items():
        assert torch.equal(value, networks.state_dict()[name]), name
    with pytest.raises(BadInputError, match="no longer trains with .* pass --restart"):
        _train(tiny, tmp_path, 2, batches="lookalike-person")


def test_a_frozen_encoder_keeps_no_optimizer_state_and_resumes_exactly(tiny, tmp_path):
    from wiseedit.recipe.training.checkpoint import training_tensors

    whole = _train(tiny, tmp_path / "a", 3, encoder_lr=0.0)
    state, groups = training_tensors(whole.checkpoint)
    encoder_group, heads_group = groups
    assert encoder_group["lr"] == 0.0
    kept = {int(key.split(".")[1]) for key in state if key.startswith("state.")}
    assert kept == set(heads_group["params"])
    _train(tiny, tmp_path / "b", 1, encoder_lr=0.0)
    resumed = _train(tiny, tmp_path / "b", 3, encoder_lr=0.0)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[1:]]
    for name, value in whole.networks.state_dict().items():
        assert torch.equal(value, resumed.networks.state_dict()[name]), name
