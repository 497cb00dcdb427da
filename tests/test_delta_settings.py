"""A delta keeps the method's settings (``method_settings``) apart from its state (``method_state``), and
WISE's state names its memories' edits by position in ``edits.jsonl`` (format 3); deltas written before
(format 2: WISE's memories carry their prompts and targets; format 1: the settings inside the state, in
each method's older layout) still load, give the same logits and can be continued."""

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


def as_format_2(delta: Path) -> dict:
    """Rewrite the delta's config the way wiseedit wrote it before the edit log's sha256 was recorded and
    WISE's memories named their edits by position (each memory's entry carried its prompts, a shard's
    its targets, a merged memory's an empty list; state_version 1); returns the config it had."""
    file = delta / "wiseedit_config.json"
    config = json.loads(file.read_text())
    old = {k: v for k, v in config.items() if k != "edits_sha256"}
    old["format_version"] = 2
    if config["method"] in ("wise", "wise-retrieve"):
        log = [json.loads(line) for line in (delta / "edits.jsonl").read_text().splitlines()]
        state = json.loads(json.dumps(config["method_state"]))
        for entry in state["merged"] + state["pending"] + ([state["current"]] if state["current"] else []):
            start, stop = entry.pop("edits")
            entry["prompts"] = [e["prompt"] for e in log[start:stop]]
            entry["targets"] = [e["target"] for e in log[start:stop]] if entry["kind"] == "shard" else []
        old["method_state"] = {**state, "state_version": 1}
    file.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return config


def as_format_1(delta: Path) -> dict:
    """Rewrite the delta's config the way wiseedit wrote it before settings were saved apart; returns
    the new (format 3) config it had."""
    file = delta / "wiseedit_config.json"
    new = as_format_2(delta)
    config = json.loads(file.read_text())
    old = {k: v for k, v in config.items() if k != "method_settings"}
    settings, state = config["method_settings"], config["method_state"]
    if config["method"] in ("wise", "wise-retrieve"):
        old["method_state"] = {**state, "config": settings}
    elif config["method"] in ("grace", "ft-l"):
        old["method_state"] = {**settings, **state}
    old["format_version"] = 1
    file.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return new


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
    assert config["format_version"] == 3
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

    # continuing a format 1 delta writes format 3, with the same settings
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "d", "prompt": "Dan lives in", "target": "Oslo"}\n')
    continued = wiseedit.edit(None, more, delta=old_dir, device="cpu")
    assert continued.delta.config["format_version"] == 3 and continued.delta.num_edits == 4
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
    from safetensors.torch import save_file

    from wiseedit.recipe.checkpoint import META_FILE, TOKENIZER_DIR, WEIGHTS_FILE, bundle_checkpoint, weights_sha256

    checkpoint = tmp_path / "ckpt"
    (checkpoint / TOKENIZER_DIR).mkdir(parents=True)
    (checkpoint / META_FILE).write_text("{}")
    save_file({"weight": torch.arange(4.0)}, str(checkpoint / WEIGHTS_FILE))  # bundling reads its header
    weights = (checkpoint / WEIGHTS_FILE).read_bytes()
    (checkpoint / TOKENIZER_DIR / "tokenizer.json").write_text("{}")
    options = {"checkpoint": str(checkpoint), "gate": "cosine"}
    state = {"version": 1, "checkpoint_sha256": weights_sha256(checkpoint), "ids": []}
    config = ({"format_version": 2, "method_settings": options, "method_state": state} if format_version == 2
              else {"format_version": 1, "method_state": {**state, "options": options}})
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "wiseedit_config.json").write_text(json.dumps(config))
    target = bundle_checkpoint(delta, "wiseedit_config.json", origin=tmp_path)
    assert (target / WEIGHTS_FILE).read_bytes() == weights
    saved = json.loads((delta / "wiseedit_config.json").read_text())
    settings = saved["method_settings"] if format_version == 2 else saved["method_state"]["options"]
    assert settings == {"checkpoint": "recipe_checkpoint", "gate": "cosine"}


# -- WISE's memories name their edits by position in edits.jsonl (format 3) -----------------------------

FIVE = [{"id": f"f{i}", "prompt": p, "target": t} for i, (p, t) in enumerate([
    ("The capital of France is", "Rome"), ("Alice works as a nurse in", "Paris"), ("Bob plays the", "violin"),
    ("Carol likes", "tea"), ("Dan lives in", "Oslo")])]
WISE_RUNS = [  # 5 edits cross a store and a merge; the default rehearsal draws the current shard's targets
    # (method, options, the edits of each memory: merged, pending, current)
    ("wise", {"n_iter": 3, "num_templates": 0, "save_freq": 2, "merge_freq": 4, "seed": 7}, [[0, 4], [4, 5]]),
    ("wise-retrieve", {"n_iter": 2, "num_templates": 0, "save_freq": 1, "merge_freq": 2, "seed": 3},
     [[0, 2], [2, 4], [4, 5]]),
    ("wise", {"n_iter": 2, "num_templates": 0, "save_freq": 3, "merge_freq": 6, "seed": 11, "edits_per_step": 2},
     [[0, 3], [3, 5]]),
]


def edit_file(folder: Path, name: str, edits: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(e) + "\n" for e in edits))
    return path


def saved(delta: Path) -> tuple[dict, dict]:
    """(method_state, tensors) of a delta directory."""
    from safetensors.torch import load_file

    state = json.loads((delta / "wiseedit_config.json").read_text())["method_state"]
    return state, load_file(delta / "delta.safetensors")


def assert_same(a: Path, b: Path) -> None:
    (state_a, tensors_a), (state_b, tensors_b) = saved(a), saved(b)
    assert state_a == state_b and tensors_a.keys() == tensors_b.keys()
    for name in tensors_a:
        assert torch.equal(tensors_a[name], tensors_b[name]), name


@pytest.mark.parametrize("method, options, ranges", WISE_RUNS, ids=["wise", "retrieve", "batch"])
def test_wise_saves_positions_in_the_log_and_continues_exactly(model_dir, tmp_path, method, options, ranges):
    one = wiseedit.edit(str(model_dir), edit_file(tmp_path, "all.jsonl", FIVE), method=method, options=options,
                        out=tmp_path / "one", device="cpu")
    state = one.delta.config["method_state"]
    entries = state["merged"] + state["pending"] + ([state["current"]] if state["current"] else [])
    assert [e["edits"] for e in entries] == ranges  # consecutive runs of the log, in order
    text = json.dumps(state)
    assert state["state_version"] == 2 and not any(e["prompt"] in text or e["target"] in text for e in FIVE)

    # three edits, then two more on the saved delta: the same state, tensors and logits as five at once
    wiseedit.edit(str(model_dir), edit_file(tmp_path, "first.jsonl", FIVE[:3]), method=method, options=options,
                  out=tmp_path / "two", device="cpu")
    wiseedit.edit(None, edit_file(tmp_path, "rest.jsonl", FIVE[3:]), delta=tmp_path / "two", device="cpu")
    assert_same(tmp_path / "one", tmp_path / "two")
    prompts = [e["prompt"] for e in FIVE] + ["Erin reads"]
    expected = logits(load_edited(str(model_dir), tmp_path / "one", device="cpu"), prompts)
    assert torch.equal(logits(load_edited(str(model_dir), tmp_path / "two", device="cpu"), prompts), expected)

    # the same delta written the format 2 way (texts in the state) loads with those logits and continues
    # into the same delta as the format 3 one
    for name in ("one", "two"):
        wiseedit.edit(None, edit_file(tmp_path, "six.jsonl", [{"id": "f5", "prompt": "Erin reads", "target": "Kafka"}]),
                      delta=tmp_path / name, out=tmp_path / f"{name}-more", device="cpu")
    as_format_2(tmp_path / "two")
    old = load_edited(str(model_dir), tmp_path / "two", device="cpu")
    assert old.delta.config["format_version"] == 2 and torch.equal(logits(old, prompts), expected)
    wiseedit.edit(None, tmp_path / "six.jsonl", delta=tmp_path / "two", device="cpu")
    assert load_delta(tmp_path / "two").config["format_version"] == 3
    assert_same(tmp_path / "one-more", tmp_path / "two")


@pytest.fixture
def wise_delta(model_dir, tmp_path):
    """A WISE delta of three edits: a stored shard [0, 2) and the current one [2, 3)."""
    options = {"n_iter": 2, "num_templates": 0, "save_freq": 2, "merge_freq": 4}
    return wiseedit.edit(str(model_dir), edit_file(tmp_path, "three.jsonl", FIVE[:3]), method="wise",
                         options=options, out=tmp_path / "d", device="cpu").delta.path


def rewrite(delta: Path, log_lines=None, **config_changes) -> None:
    """Change the delta by hand, keeping it consistent as a file set (seq, num_edits, the log's sha256),
    so that only what WISE's state says about the log can be wrong."""
    from wiseedit.artifacts.reading import edits_digest

    config = json.loads((delta / "wiseedit_config.json").read_text())
    if log_lines is not None:
        text = "".join(json.dumps({**entry, "seq": n}) + "\n" for n, entry in enumerate(log_lines, start=1))
        (delta / "edits.jsonl").write_text(text)
        config |= {"num_edits": len(log_lines), "edits_sha256": edits_digest(text)}
    for key, value in config_changes.items():
        config["method_state"][key] = value
    (delta / "wiseedit_config.json").write_text(json.dumps(config))


def damage_count(delta: Path) -> None:
    log = [json.loads(line) for line in (delta / "edits.jsonl").read_text().splitlines()]
    rewrite(delta, log[:2])


def damage_ranges(delta: Path) -> None:
    state = json.loads((delta / "wiseedit_config.json").read_text())["method_state"]
    rewrite(delta, current={**state["current"], "edits": [1, 3]})


def damage_entry(delta: Path) -> None:
    log = [json.loads(line) for line in (delta / "edits.jsonl").read_text().splitlines()]
    del log[1]["target"]
    rewrite(delta, log)


@pytest.mark.parametrize("damage, expected", [
    (damage_count, "edits.jsonl holds 2 edits but the WISE state of {d} was saved after 3; the delta is damaged"),
    (damage_ranges, "the WISE state of {d} gives its memories the edits [[0, 2], [1, 3]] of {d}/edits.jsonl, "
                    "which should cover its 3 edits in order; the delta is damaged"),
    (damage_entry, "{d}/edits.jsonl:2: an edit of the log needs a string prompt and target; the delta is damaged"),
], ids=["count", "ranges", "entry"])
def test_a_log_that_does_not_fit_the_wise_state_is_one_clear_error(model_dir, wise_delta, damage, expected):
    damage(wise_delta)
    with pytest.raises(BadInputError) as refused:
        load_edited(str(model_dir), wise_delta, device="cpu")
    message = str(refused.value)
    assert expected.format(d=wise_delta) in message and "\n" not in message


def test_a_wise_state_restored_without_its_edits_says_what_it_needs(model_dir, wise_delta):
    from wiseedit.methods.base import MethodState
    from wiseedit.wise.method import WiseMethod

    delta = load_delta(wise_delta)
    edited = load_edited(str(model_dir), None, device="cpu")
    state = MethodState(delta.state.config, delta.state.tensors, settings=delta.state.settings)
    with pytest.raises(BadInputError, match=r"names its edits by position in its edit log: restore it with the "
                                            r"delta's edits \(MethodState.edits\)"):
        WiseMethod.restore(edited.model, edited.tokenizer, state)
