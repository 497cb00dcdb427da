"""The delta directory: exact round trips, append-only audit log, atomic writes, safe and clear loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from wiseedit.artifacts import (
    atomic_directory,
    backup_path,
    check_delta_base,
    default_delta_dir,
    load_delta,
    save_delta,
    short_hash,
)
from wiseedit.artifacts import delta as delta_module
from wiseedit.errors import BadInputError
from wiseedit.methods.base import MethodState

FP_A = "sha256:" + "abcd" * 16
FP_B = "sha256:" + "ef01" * 16


def _state() -> MethodState:
    weights = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    return MethodState(
        settings={"lr": 0.5, "layer": None},
        config={"threshold": 0.125, "counter": 3, "rng": [1, 2, 3], "nested": {"a": None}},
        tensors={
            "memory.fp32": weights,
            "memory.bf16": (weights * 3.3).to(torch.bfloat16),
            "keys.int64": torch.tensor([2**40, -5, 0], dtype=torch.int64),
            "memory.transposed": weights.t(),  # not contiguous: the writer copies it
        },
    )


def _edits(*ids: str) -> list[dict]:
    return [{"id": i, "prompt": f"The capital of {i} is", "target": " Paris"} for i in ids]


def _save(path: Path, state=None, edits=("e1", "e2"), **overrides):
    kwargs = dict(
        method="wise", state=state or _state(), edited_module="model.layers.1.mlp.down_proj",
        base_name="tiny-llama", base_revision=None, base_fingerprint=FP_A, seed=42,
        new_edits=_edits(*edits),
    )
    kwargs.update(overrides)
    return save_delta(path, **kwargs)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_round_trip_is_bit_identical(tmp_path):
    state = _state()
    saved = _save(tmp_path / "d", state=state)
    loaded = load_delta(tmp_path / "d")
    assert set(loaded.state.tensors) == set(state.tensors)
    for name, tensor in state.tensors.items():
        got = loaded.state.tensors[name]
        assert got.dtype == tensor.dtype and got.device.type == "cpu"
        assert torch.equal(got, tensor), name
    assert loaded.state.config == state.config and loaded.state.settings == state.settings
    assert loaded.config["method_settings"] == state.settings and loaded.config["method_state"] == state.config
    assert loaded.config == saved.config
    assert (loaded.method, loaded.num_edits, loaded.base_fingerprint) == ("wise", 2, FP_A)
    text = (tmp_path / "d" / "wiseedit_config.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert set(loaded.config["versions"]) == {"wiseedit", "torch", "transformers", "safetensors"}
    assert loaded.config["created"].endswith("Z") and loaded.config["format_version"] == 3
    log = (tmp_path / "d" / "edits.jsonl").read_bytes()
    assert loaded.config["edits_sha256"] == "sha256:" + hashlib.sha256(log).hexdigest()
    with safe_open(str(tmp_path / "d" / "delta.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "wiseedit_format_version": "3", "method": "wise"}


def test_no_tensors_still_writes_a_loadable_file(tmp_path):
    _save(tmp_path / "d", state=MethodState(config={"num_edits": 0}), method="none", edits=())
    loaded = load_delta(tmp_path / "d")
    assert loaded.state.tensors == {} and loaded.edits_log == [] and loaded.num_edits == 0
    assert (tmp_path / "d" / "delta.safetensors").is_file()
    assert (tmp_path / "d" / "edits.jsonl").read_bytes() == b""


def test_appending_keeps_old_log_lines_byte_for_byte(tmp_path):
    path = tmp_path / "d"
    first = _save(path, edits=("e1", "e2"))
    old_bytes = (path / "edits.jsonl").read_bytes()
    previous = load_delta(path)
    new_edits = [{"id": "e3", "prompt": "Line\u2028separator ünïcode is", "target": " fine"}]
    _save(path, new_edits=new_edits, previous=previous)  # same path: appending in place
    now = load_delta(path)
    assert (path / "edits.jsonl").read_bytes().startswith(old_bytes)
    assert [e["seq"] for e in now.edits_log] == [1, 2, 3]
    assert now.edits_log[2]["prompt"] == new_edits[0]["prompt"]
    assert now.edits_log[:2] == first.edits_log and now.num_edits == 3
    assert now.config["created"] == first.config["created"]
    assert now.config["edits_sha256"] == "sha256:" + hashlib.sha256((path / "edits.jsonl").read_bytes()).hexdigest()
    assert now.config["edits_sha256"] != first.config["edits_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_failure_inside_atomic_directory_leaves_previous_delta(tmp_path):
    path = tmp_path / "d"
    _save(path)
    before = _snapshot(path)
    with pytest.raises(RuntimeError):
        with atomic_directory(path, overwrite=True) as tmp:
            (tmp / "wiseedit_config.json").write_text("half written")
            raise RuntimeError("interrupted")
    assert _snapshot(path) == before and load_delta(path).num_edits == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temp dir, no backup


def test_failure_inside_save_delta_leaves_previous_delta(tmp_path, monkeypatch):
    path = tmp_path / "d"
    _save(path)
    before = _snapshot(path)

    def broken_write(target, text):
        raise OSError("disk full")

    monkeypatch.setattr(delta_module, "atomic_write_text", broken_write)
    with pytest.raises(OSError):
        _save(path, edits=("e3",), previous=load_delta(path))
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_existing_directory_is_refused_without_overwrite(tmp_path):
    _save(tmp_path / "d")
    before = _snapshot(tmp_path / "d")
    with pytest.raises(BadInputError, match="already exists"):
        _save(tmp_path / "d", edits=("other",))
    _save(tmp_path / "d", edits=("other",), overwrite=True)
    assert _snapshot(tmp_path / "d") != before and load_delta(tmp_path / "d").edits_log[0]["id"] == "other"


def test_crash_between_renames_is_reported_with_the_restore_command(tmp_path):
    path = tmp_path / "d"
    _save(path)
    path.rename(backup_path(path))  # the state a kill between the two renames leaves
    for attempt in (lambda: load_delta(path), lambda: _save(path, overwrite=True)):
        with pytest.raises(BadInputError, match="mv ") as info:
            attempt()
        assert str(backup_path(path)) in str(info.value)
    backup_path(path).rename(path)
    assert load_delta(path).num_edits == 2


def test_different_base_fingerprint_is_refused(tmp_path):
    delta = _save(tmp_path / "d")
    check_delta_base(delta, FP_A, "tiny-llama")  # same weights: fine
    with pytest.raises(BadInputError) as info:
        check_delta_base(delta, FP_B, "other-llama")
    message = str(info.value)
    assert short_hash(FP_A) in message and short_hash(FP_B) in message
    assert short_hash(FP_A) == "sha256:abcdabcdabcd…" and "\n" not in message
    with pytest.raises(BadInputError, match="base weights"):
        _save(tmp_path / "d", edits=("e3",), previous=delta, base_fingerprint=FP_B)


def _corrupt_json(d: Path) -> str:
    (d / "wiseedit_config.json").write_text('{"format_version": 1, "method": ')
    return "wiseedit_config.json"


def _missing_keys(d: Path) -> str:
    config = json.loads((d / "wiseedit_config.json").read_text())
    del config["base_fingerprint"], config["seed"]
    (d / "wiseedit_config.json").write_text(json.dumps(config))
    return "wiseedit_config.json"


def _newer_format(d: Path) -> str:
    config = json.loads((d / "wiseedit_config.json").read_text())
    config["format_version"] = 4
    (d / "wiseedit_config.json").write_text(json.dumps(config))
    return "wiseedit_config.json"


def _truncated_tensors(d: Path) -> str:
    data = (d / "delta.safetensors").read_bytes()
    (d / "delta.safetensors").write_bytes(data[: len(data) // 2])
    return "delta.safetensors"


def _pickle_only(d: Path) -> str:
    (d / "delta.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 not for loading")
    return "pytorch_model.bin"


def _bad_seq(d: Path) -> str:
    lines = (d / "edits.jsonl").read_text().split("\n")
    lines[1] = lines[1].replace('"seq": 2', '"seq": 7')
    (d / "edits.jsonl").write_text("\n".join(lines))
    return "edits.jsonl:2"


def _changed_log(d: Path) -> str:
    """A log line still valid JSON, with its seq in place, but another edit than the one saved."""
    text = (d / "edits.jsonl").read_text()
    (d / "edits.jsonl").write_text(text.replace("The capital of e2", "The capital of e9"))
    return "edits.jsonl"


def _swapped_log(d: Path) -> str:
    """The log of another delta with the same number of edits."""
    _save(d.parent / "other", edits=("x1", "x2"))
    (d / "edits.jsonl").write_bytes((d.parent / "other" / "edits.jsonl").read_bytes())
    return "edits.jsonl"


def _no_log_digest(d: Path) -> str:
    config = json.loads((d / "wiseedit_config.json").read_text())
    del config["edits_sha256"]
    (d / "wiseedit_config.json").write_text(json.dumps(config))
    return "wiseedit_config.json"


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_corrupt_json, "not valid JSON"),
        (_missing_keys, "base_fingerprint, seed"),
        (_newer_format, "upgrade wiseedit"),
        (_truncated_tensors, "not a readable safetensors file"),
        (_pickle_only, "never loads"),
        (_bad_seq, "seq should be 2"),
        (_changed_log, "is not the edit log"),
        (_swapped_log, "is not the edit log"),
        (_no_log_digest, "edits_sha256 should look like"),
    ],
)
def test_damaged_delta_gives_one_sentence_naming_the_file(tmp_path, damage, expected):
    path = tmp_path / "d"
    _save(path)
    file = damage(path)
    with pytest.raises(BadInputError) as info:
        load_delta(path)
    message = str(info.value)
    assert str(path / file) in message and expected in message and "\n" not in message


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_delta(tmp_path / "nowhere")


def test_default_location(tmp_path):
    base = tmp_path / "models" / "llama"
    base.mkdir(parents=True)
    cwd = tmp_path / "work"
    assert default_delta_dir(base, False, str(base), cwd) == tmp_path / "models" / "llama.wiseedit"
    assert default_delta_dir(base, True, "world", cwd) == cwd / "world.wiseedit"
    assert default_delta_dir(None, False, "meta-llama/Llama-2-7b-hf", cwd) == (
        cwd / "meta-llama--Llama-2-7b-hf.wiseedit"
    )
    snapshot = tmp_path / "hub" / "models--org--m" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert default_delta_dir(snapshot, False, "org/m", cwd) == cwd / "org--m.wiseedit"
