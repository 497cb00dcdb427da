"""A delta keeps the method's settings (``method_settings``) apart from its state (``method_state``), and
deltas written before that (format 1: the settings inside the state, in each method's older layout)
still load, give the same logits and can be continued."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
from pathlib import Path

import pytest
import torch

import wiseedit
from wiseedit.artifacts import load_delta
from wiseedit.errors import BadInputError
from wiseedit.session import load_edited

# small settings: the point is the saved form, not the quality of the edits
METHODS = [
    ("wise", {"n_iter": 3, "num_templates": 0, "save_freq": 2, "merge_freq": 4, "seed": 7}),
    ("wise-retrieve", {"n_iter": 2, "num_templates": 0, "save_freq": 1, "merge_freq": 2, "seed": 3}),
    ("grace", {"n_iter": 3, "value_init": "cold", "seed": 11}),
    ("ft-l", {"n_iter": 2, "lr": 5e-3}),
    ("none", {}),
]


def as_format_1(delta: Path) -> dict:
    """Rewrite the delta's config the way wiseedit wrote it before settings were saved apart; returns
    the new (format 2) config it had."""
    file = delta / "wiseedit_config.json"
    config = json.loads(file.read_text())
    old = {k: v for k, v in config.items() if k != "method_settings"}
    settings, state = config["method_settings"], config["method_state"]
    if config["method"] in ("wise", "wise-retrieve"):
        old["method_state"] = {**state, "config": settings}
    elif config["method"] in ("grace", "ft-l"):
        old["method_state"] = {**settings, **state}
    old["format_version"] = 1
    file.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return config


@torch.no_grad()
def logits(edited, prompts):
    enc = edited.tokenizer(prompts, return_tensors="pt", padding=True)
    return edited.model(**enc).logits


@pytest.mark.parametrize("method, options", METHODS, ids=[m for m, _ in METHODS])
def test_settings_are_saved_apart_and_a_format_1_delta_still_loads(model_dir, edits_file, tmp_path, method,
                                                                   options):
    new = wiseedit.edit(str(model_dir), edits_file, method=method, options=options, out=tmp_path / "new",
                        device="cpu")
    config = new.delta.config
    assert config["format_version"] == 2
    settings, state = config["method_settings"], config["method_state"]
    for key, value in options.items():  # every option given is a setting, none of them in the state
        assert settings[key] == value and key not in state
    if method in ("wise", "wise-retrieve", "grace"):
        assert config["seed"] == options["seed"]  # the delta records the method's seed
    prompts = ["The capital of France is", "Alice works as a nurse in", "Bob plays the", "Carol likes"]
    expected = logits(load_edited(str(model_dir), tmp_path / "new", device="cpu"), prompts)

    old_dir = tmp_path / "old"
    (tmp_path / "new").rename(old_dir)
    as_format_1(old_dir)
    old = load_delta(old_dir)
    assert old.config["format_version"] == 1 and old.state.settings is None
    restored = load_edited(str(model_dir), old_dir, device="cpu")
    assert torch.equal(logits(restored, prompts), expected)
    assert restored.method.summary() == new.edited.method.summary()

    # continuing a format 1 delta writes format 2, with the same settings
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "d", "prompt": "Dan lives in", "target": "Oslo"}\n')
    continued = wiseedit.edit(None, more, delta=old_dir, device="cpu")
    assert continued.delta.config["format_version"] == 2 and continued.delta.num_edits == 4
    assert continued.delta.config["method_settings"] == settings
    assert continued.delta.config["seed"] == config["seed"]


def test_a_format_2_delta_without_settings_is_refused(model_dir, edits_file, tmp_path):
    wiseedit.edit(str(model_dir), edits_file, method="none", out=tmp_path / "d", device="cpu")
    file = tmp_path / "d" / "wiseedit_config.json"
    config = json.loads(file.read_text())
    del config["method_settings"]
    file.write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="method_settings should be an object"):
        load_delta(tmp_path / "d")


@pytest.mark.parametrize("format_version", [1, 2])
def test_bundling_a_recipe_checkpoint_repoints_the_settings_of_either_format(tmp_path, format_version):
    from wiseedit.recipe.checkpoint import META_FILE, TOKENIZER_DIR, WEIGHTS_FILE, bundle_checkpoint, weights_sha256

    checkpoint = tmp_path / "ckpt"
    (checkpoint / TOKENIZER_DIR).mkdir(parents=True)
    (checkpoint / META_FILE).write_text("{}")
    (checkpoint / WEIGHTS_FILE).write_bytes(b"weights")
    (checkpoint / TOKENIZER_DIR / "tokenizer.json").write_text("{}")
    options = {"checkpoint": str(checkpoint), "gate": "cosine"}
    state = {"version": 1, "checkpoint_sha256": weights_sha256(checkpoint), "ids": []}
    config = ({"format_version": 2, "method_settings": options, "method_state": state} if format_version == 2
              else {"format_version": 1, "method_state": {**state, "options": options}})
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "wiseedit_config.json").write_text(json.dumps(config))
    target = bundle_checkpoint(delta, "wiseedit_config.json", origin=tmp_path)
    assert (target / WEIGHTS_FILE).read_bytes() == b"weights"
    saved = json.loads((delta / "wiseedit_config.json").read_text())
    settings = saved["method_settings"] if format_version == 2 else saved["method_state"]["options"]
    assert settings == {"checkpoint": "recipe_checkpoint", "gate": "cosine"}
