"""Texts longer than the model's context are refused with file:line before any model is loaded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json

import pytest
from typer.testing import CliRunner

import wiseedit
import wiseedit.api as api
from wiseedit.cli.app import app
from wiseedit.errors import InputProblems
from wiseedit.evaluation import runner
from wiseedit.models.context import CONTEXT_RESERVE, context_length


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny GPT-2 (n_positions 256) and Llama (max_position_embeddings 1024) folders with their tokenizer."""
    from wiseedit.testing.tiny import tiny_model, tiny_tokenizer

    root, tokenizer, out = tmp_path_factory.mktemp("ctx"), tiny_tokenizer(vocab_size=1000), {}
    for arch in ("gpt2", "llama"):
        tiny_model(arch, tokenizer, layers=2).save_pretrained(root / arch)
        tokenizer.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


def words(n: int) -> str:
    return " ".join(["the"] * n)


def no_loading(*args, **kwargs):
    raise AssertionError("the model was loaded before the edits were checked")


@pytest.mark.parametrize("arch,key,limit", [("gpt2", "n_positions", 256), ("llama", "max_position_embeddings", 1024)])
@pytest.mark.parametrize("field", ["prompt", "rephrase", "locality"])
def test_edit_refuses_a_text_longer_than_the_context_before_loading(folders, tmp_path, monkeypatch, arch, key,
                                                                    limit, field):
    assert context_length(folders[arch]) == (limit, key)
    long = words(limit + 30)
    record = {"prompt": "Short prompt", "target": "x"}
    record |= {"prompt": long} if field == "prompt" else (
        {"rephrase": ["ok", long]} if field == "rephrase" else {"locality": [{"prompt": long, "answer": "y"}]})
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"prompt": "fine", "target": "x"}) + "\n" + json.dumps(record) + "\n")
    monkeypatch.setattr(api, "load_base", no_loading)
    with pytest.raises(InputProblems) as info:
        wiseedit.edit(str(folders[arch]), path, method="none", out=tmp_path / "d", device="cpu")
    [problem] = info.value.problems
    where = {"prompt": "prompt", "rephrase": "rephrase[1]", "locality": "locality[0].prompt"}[field]
    assert problem.startswith(f"{path}:2: {where}: ") and f"({key} {limit}, less {CONTEXT_RESERVE} kept" in problem
    assert not (tmp_path / "d").exists()


def count(folder, text: str, answer: str = "the") -> int:
    """Tokens of `text` with its answer, counted independently of the code under test."""
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder)(text + " " + answer)["input_ids"])


@pytest.mark.parametrize("extra,fits", [(-40, True), (0, True), (1, False), (30, False)])
def test_the_limit_counts_prompt_answer_and_reserve(folders, tmp_path, extra, fits):
    room = 256 - CONTEXT_RESERVE
    edge = max(n for n in range(1, 300) if count(folders["gpt2"], words(n)) <= room)  # the longest that fits
    n = edge + extra
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"prompt": words(n), "target": "the"}) + "\n")
    if fits:
        assert wiseedit.edit(str(folders["gpt2"]), path, method="none", out=tmp_path / "d", device="cpu")
    else:
        tokens = count(folders["gpt2"], words(n))
        with pytest.raises(InputProblems, match=f":1: prompt: {tokens} tokens with its answer"):
            wiseedit.edit(str(folders["gpt2"]), path, method="none", out=tmp_path / "d", device="cpu")


def test_cli_exit_2_names_file_and_line(folders, tmp_path):
    path = tmp_path / "edits.jsonl"
    records = [{"prompt": "ok", "target": "x"}, {"prompt": words(400), "target": "the"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(app, ["edit", str(path), "--model", str(folders["gpt2"]), "--method", "none",
                                      "--device", "cpu", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2, result.stderr
    tokens = count(folders["gpt2"], words(400))
    assert result.stderr.startswith(f"error: {path}:2: prompt: {tokens} tokens with its answer, more than model ")


def test_eval_refuses_before_loading(folders, tmp_path, monkeypatch):
    path = tmp_path / "suite.jsonl"
    record = {"prompt": "ok", "target": "x", "portability": [{"prompt": words(1100), "answer": "the"}]}
    path.write_text(json.dumps(record) + "\n")
    monkeypatch.setattr(runner, "load_base", no_loading)
    tokens = count(folders["llama"], words(1100))
    with pytest.raises(InputProblems, match=rf":1: portability\[0\].prompt: {tokens} tokens"):
        runner.evaluate(str(folders["llama"]), runner.EvalConfig(suite=str(path), methods=("none",), T=(1,)),
                        device="cpu")


def test_the_chat_template_counts(folders, tmp_path, monkeypatch):
    """A prompt that fits raw but not once the template's text is around it is refused with auto only."""
    from transformers import AutoTokenizer

    import shutil

    folder = shutil.copytree(folders["gpt2"], tmp_path / "chat")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = words(40) + "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(folder)
    path = tmp_path / "edits.jsonl"
    path.write_text(json.dumps({"prompt": words(200), "target": "the"}) + "\n")
    assert count(folder, words(200)) <= 256 - CONTEXT_RESERVE  # fits raw
    tokens = count(folder, words(40) + words(200))  # the template's text, then the prompt
    with pytest.raises(InputProblems, match=f":1: prompt: {tokens} tokens"):
        wiseedit.edit(str(folder), path, method="none", out=tmp_path / "d", device="cpu")
    assert wiseedit.edit(str(folder), path, method="none", out=tmp_path / "d", device="cpu", chat_template="none")
