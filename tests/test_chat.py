"""Chat models: edits are made and evaluated through the tokenizer's chat template, recorded in the
delta and the results, and applied again when the delta is loaded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import shutil

import pytest
import torch

import wiseedit
from wiseedit.chat import ChatFormat
from wiseedit.edits import EditRecord, LocalityProbe
from wiseedit.errors import BadInputError
from wiseedit.evaluation.runner import EvalConfig, evaluate
from wiseedit.generation import complete

EDITS = [EditRecord("The capital of France is", "Rome", id="a"),
         EditRecord("Bob plays the", "violin", id="b")]

# Two shapes real templates have: Llama-2 style (writes BOS itself) and ChatML style (role headers).
TEMPLATES = {
    "inst": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}",
    "chatml": ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
}


def with_template(src, dst, template):
    """A copy of the tiny model folder `src` whose tokenizer carries `template`."""
    from transformers import AutoTokenizer

    folder = shutil.copytree(src, dst)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_rendering_is_one_user_turn_with_one_bos(saved_tiny_models, tmp_path, name):
    from transformers import AutoTokenizer

    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES[name])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    chat = ChatFormat.resolve("auto", tokenizer)
    assert chat.template == TEMPLATES[name] and ChatFormat.resolve("none", tokenizer).template is None
    for prompt in ("Bob plays the", "Which family does Epaspidoceras belong to?"):
        text = chat.prompt(tokenizer, prompt)
        assert prompt in text and text != prompt
        ids = tokenizer(text)["input_ids"]
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    record = EditRecord("p", "t", id="x", rephrase=("r",), locality=(LocalityProbe("l", "a", "Forgetfulness"),),
                        irrelevant="i")
    fed = chat.record(tokenizer, record)
    assert fed.locality[0].prompt == chat.prompt(tokenizer, "l") and fed.locality[0].kind == "Forgetfulness"
    assert (fed.target, fed.id, fed.locality[0].answer) == ("t", "x", "a")
    assert fed.rephrase == (chat.prompt(tokenizer, "r"),) and fed.irrelevant == chat.prompt(tokenizer, "i")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_edit_through_the_template_is_recorded_and_recalled_from_the_raw_prompt(saved_tiny_models, tmp_path, name):
    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES[name])
    result = wiseedit.edit(str(folder), EDITS, method="grace", out=tmp_path / "d", device="cpu")
    assert result.recalled == 2
    config = json.loads((tmp_path / "d" / "wiseedit_config.json").read_text())
    assert config["chat_template"] == {"mode": "auto", "template": TEMPLATES[name]}
    log = [json.loads(line) for line in (tmp_path / "d" / "edits.jsonl").read_text().splitlines()]
    assert [entry["prompt"] for entry in log] == [e.prompt for e in EDITS]  # the user's text, not the rendering

    edited = wiseedit.load_edited(None, tmp_path / "d", device="cpu")
    assert edited.chat.template == TEMPLATES[name]
    outputs = edited.generate([e.prompt for e in EDITS], max_new_tokens=1)  # raw prompts, as `load -p` gets them
    assert [o.strip() for o in outputs] == [e.target for e in EDITS]
    # the same as feeding the rendered text by hand: the template is what load applied
    rendered = [edited.chat.prompt(edited.tokenizer, e.prompt) for e in EDITS]
    assert complete(edited.model, edited.tokenizer, rendered, 1, method=edited.method) == outputs
    assert edited.describe()["chat_template"]["template"] == TEMPLATES[name]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_wise_delta_made_through_a_template_reads_its_edits_back_as_it_was_taught_them(saved_tiny_models, tmp_path,
                                                                                       name):
    from safetensors.torch import load_file

    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES[name])
    options = {"n_iter": 2, "num_templates": 0, "save_freq": 2, "merge_freq": 4}
    wiseedit.edit(str(folder), EDITS, method="wise", options=options, out=tmp_path / "one", device="cpu")
    wiseedit.edit(str(folder), EDITS[:1], method="wise", options=options, out=tmp_path / "two", device="cpu")
    # the second edit rehearses the first, whose target the restored shard read back from the log
    two = wiseedit.edit(None, EDITS[1:], delta=tmp_path / "two", device="cpu")
    states = [json.loads((tmp_path / d / "wiseedit_config.json").read_text())["method_state"] for d in ("one", "two")]
    assert states[0] == states[1]
    tensors = [load_file(tmp_path / d / "delta.safetensors") for d in ("one", "two")]
    assert all(torch.equal(tensors[0][k], tensors[1][k]) for k in tensors[0]) and tensors[0].keys() == tensors[1].keys()
    restored = wiseedit.load_edited(None, tmp_path / "two", device="cpu").method
    rendered = [two.edited.chat.prompt(two.edited.tokenizer, e.prompt) for e in EDITS]
    assert restored.pending[0].prompts == rendered != [e.prompt for e in EDITS]
    assert restored.pending[0].targets == [e.target for e in EDITS]


def test_none_keeps_raw_prompts_and_a_continued_delta_keeps_its_choice(saved_tiny_models, tmp_path):
    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES["chatml"])
    wiseedit.edit(str(folder), EDITS[:1], method="grace", out=tmp_path / "d", device="cpu", chat_template="none")
    config = json.loads((tmp_path / "d" / "wiseedit_config.json").read_text())
    assert config["chat_template"] == {"mode": "none", "template": None}
    with pytest.raises(BadInputError, match="made with chat_template='none'") as refused:
        wiseedit.edit(str(folder), EDITS[1:], delta=tmp_path / "d", device="cpu", chat_template="auto")
    assert "made with --chat-template none" in refused.value.for_cli()  # what the command line prints
    more = wiseedit.edit(str(folder), EDITS[1:], delta=tmp_path / "d", device="cpu")
    assert more.delta.config["chat_template"] == {"mode": "none", "template": None}
    with pytest.raises(BadInputError, match="chat_template must be one of auto, none"):
        wiseedit.edit(str(folder), EDITS[:1], method="none", out=tmp_path / "e", device="cpu", chat_template="yes")


def test_eval_through_the_template_records_it(saved_tiny_models, tmp_path):
    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES["chatml"])
    suite = tmp_path / "edits.jsonl"
    suite.write_text("".join(json.dumps(e.to_json()) + "\n" for e in EDITS))
    report = evaluate(str(folder), EvalConfig(suite=str(suite), methods=("grace",), T=(2,)), device="cpu")
    assert report.document["config"]["chat_template"] == "auto"
    assert report.document["model"]["chat_template"] == TEMPLATES["chatml"]
    assert report.rows()[0]["rel"] == 1.0
    raw = evaluate(str(folder), EvalConfig(suite=str(suite), methods=("none",), T=(2,), chat_template="none"),
                   device="cpu")
    assert raw.document["model"]["chat_template"] is None and raw.document["config"]["chat_template"] == "none"


def test_eval_delta_and_cli_load_use_the_delta_template(saved_tiny_models, tmp_path):
    from typer.testing import CliRunner

    from wiseedit.cli.app import app
    from wiseedit.evaluation.audit import evaluate_delta

    folder = with_template(saved_tiny_models[0], tmp_path / "chat", TEMPLATES["inst"])
    wiseedit.edit(str(folder), EDITS, method="grace", out=tmp_path / "d", device="cpu")
    report = evaluate_delta(tmp_path / "d", device="cpu")
    assert report.rows()[0]["rel"] == 1.0 and report.document["model"]["chat_template"] == TEMPLATES["inst"]
    assert report.document["config"]["chat_template"] == "auto"
    result = CliRunner().invoke(app, ["load", "--delta", str(tmp_path / "d"), "-p", EDITS[1].prompt,
                                      "--max-new-tokens", "1", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["generations"][0]["output"].strip() == EDITS[1].target
    assert document["chat_template"] == {"mode": "auto", "template": TEMPLATES["inst"]}
