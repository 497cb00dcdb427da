"""``wiseedit export``: self-contained and merged folders, their parity with the in-process edited model,
loading without wiseedit, the Loc gate, and what is (not) written."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import wiseedit
from wiseedit.cli import export_cmd
from wiseedit.cli.app import app
from wiseedit.edits import EditRecord
from wiseedit.edits.record import LocalityProbe
from wiseedit.export.card import CardFacts, model_card
from wiseedit.artifacts.exported import DELTA_SUBDIR, MODELING_CLASS, MODELING_FILE, PROVENANCE_FILE, exported_delta
from wiseedit.export.exporter import export_model
from wiseedit.export.measure import ExportMetrics, Figures, neutral_probes, probes_from_log
from wiseedit.export.merged import LocalityTooLow, merged_weight
from wiseedit.models import get_module
from wiseedit.models.modules import is_conv1d
from wiseedit.testing.tiny import tiny_model, tiny_tokenizer
from wiseedit.wise.merging import ties

FAST = {"n_iter": 10, "num_templates": 2}
EDITS = [
    EditRecord("The capital of France is", "Rome", id="a",
               locality=(LocalityProbe("The capital of Italy is", "Rome"),)),
    EditRecord("Bob plays the", "violin", id="b"),
]
PROMPTS = ["The capital of France is", "Bob plays the", "The sky is blue and", "My favourite colour is"]
ENV = {"HF_HUB_OFFLINE": "1"}



@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(vocab_size=1000)


@pytest.fixture(scope="module")
def bases(root, tokenizer):
    """Tiny Llama and GPT-2 (FFN 16x wide, as WISE needs) saved as Hugging Face folders."""
    folders = {}
    for arch in ("llama", "gpt2"):
        folder = root / arch
        tiny_model(arch, tokenizer, ffn_mult=16).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[arch] = folder
    return folders


@pytest.fixture(scope="module")
def edited(root, bases):
    """WISE deltas on both models, a WISE-Retrieve one with one memory per edit, and a GRACE one; each
    with its still-live in-process edited model (EditResult.edited)."""
    runs = {
        "llama": ("llama", "wise", FAST),
        "gpt2": ("gpt2", "wise", FAST),
        "retrieve": ("llama", "wise-retrieve", {**FAST, "save_freq": 1, "merge_freq": 1}),
        "grace": ("llama", "grace", None),
    }
    return {key: wiseedit.edit(str(bases[arch]), EDITS, method=method, options=options,
                               out=root / f"{key}.wiseedit", device="cpu")
            for key, (arch, method, options) in runs.items()}


def logits(model, tokenizer, prompts=PROMPTS):
    with torch.no_grad():
        return [model(**tokenizer(p, return_tensors="pt")).logits for p in prompts]


def files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def reference_merged(base_dir: Path, result, tokenizer):
    """The in-process model the merged export must equal: the base with the edited module's weight
    W_main + the consolidated delta, no router (computed here independently of the exporter)."""
    edited = wiseedit.load_edited(str(base_dir), result.delta.path, device="cpu")
    method = edited.method
    method.merge_pending()
    deltas = [m.delta for m in method.merged]
    delta = deltas[0] if len(deltas) == 1 else ties(deltas, [1 / len(deltas)] * len(deltas),
                                                    method.config.density)
    method.detach()
    module = get_module(edited.model, method.module_path)
    with torch.no_grad():
        module.weight += delta.t() if is_conv1d(module) else delta
    return edited.model


# -- self-contained ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["llama", "gpt2", "retrieve"])
def test_self_contained_loads_bit_identical_to_the_edited_model(key, edited, tokenizer, tmp_path):
    result = edited[key]
    before = files(result.delta.path)
    out = export_model(None, result.delta.path, tmp_path / "export", device="cpu")
    folder = out.path
    assert exported_delta(folder) == folder / DELTA_SUBDIR
    assert files(folder / DELTA_SUBDIR) == before == files(result.delta.path)  # verbatim copy, source untouched
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", PROVENANCE_FILE,
            MODELING_FILE} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoModelForCausalLM": f"modeling_wiseedit.{MODELING_CLASS}"}

    model = wiseedit.load(str(folder), device="cpu")
    assert model.wiseedit is not None and model.wiseedit.summary()["edits"] == len(EDITS)
    for got, want in zip(logits(model, tokenizer), logits(result.edited.model, tokenizer)):
        assert torch.equal(got, want)

    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    assert provenance["form"] == "self-contained" and provenance["method"] == result.method
    assert provenance["base_fingerprint"] == provenance["weights_fingerprint"] == result.delta.base_fingerprint
    assert provenance["edits_log"] == f"{DELTA_SUBDIR}/edits.jsonl"
    assert provenance["metrics"] == out.metrics.to_json()
    assert provenance["wiseedit_version"] == wiseedit.__version__ and provenance["created"].endswith("Z")


def test_trust_remote_code_gives_the_edited_model_plain_loading_the_base(edited, bases, tokenizer, tmp_path):
    result = edited["llama"]
    folder = export_model(None, result.delta.path, tmp_path / "export", device="cpu").path
    script = textwrap.dedent(f"""
        import sys, torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
        torch.set_num_threads(1)
        tok = AutoTokenizer.from_pretrained({str(folder)!r})
        out = {{}}
        for name, trust in (("remote", True), ("plain", False)):
            model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=trust)
            out[name + "_edited"] = torch.tensor([getattr(model, "wiseedit", None) is not None])
            with torch.no_grad():
                for i, p in enumerate({PROMPTS!r}):
                    out[f"{{name}}{{i}}"] = model(**tok(p, return_tensors="pt")).logits.contiguous()
        save_file(out, {str(tmp_path / "logits.safetensors")!r})
    """)
    env = {**os.environ, **ENV, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # not the user's cache
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = load_file(tmp_path / "logits.safetensors")
    assert saved["remote_edited"].item() and not saved["plain_edited"].item()
    edited_logits = logits(result.edited.model, tokenizer)
    base_logits = logits(wiseedit.load(str(bases["llama"]), device="cpu"), tokenizer)
    for i, (want_edited, want_base) in enumerate(zip(edited_logits, base_logits)):
        assert torch.equal(saved[f"remote{i}"], want_edited)
        assert torch.equal(saved[f"plain{i}"], want_base)  # without trust_remote_code: the unedited base
    assert not torch.equal(edited_logits[0], base_logits[0])  # the edit is visible on its prompt


# -- merged ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["llama", "gpt2", "retrieve"])
def test_merged_checkpoint_equals_main_plus_merged_delta(key, edited, bases, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    result = edited[key]
    base_dir = bases["gpt2" if key == "gpt2" else "llama"]
    before = files(result.delta.path)
    out = export_model(None, result.delta.path, tmp_path / "merged", merged=True, min_loc=0.0, device="cpu")
    assert files(result.delta.path) == before  # merging worked on a copy
    assert exported_delta(out.path) is None and not (out.path / MODELING_FILE).exists()
    assert (out.path / "edits.jsonl").read_text() == result.delta.edits_text

    exported = AutoModelForCausalLM.from_pretrained(out.path)
    reference = reference_merged(base_dir, result, tokenizer)
    for got, want in zip(logits(exported, tokenizer), logits(reference, tokenizer)):
        assert torch.equal(got, want)

    # the merged figures are those of that very model
    from wiseedit.evaluation.metrics import token_accuracy

    rel = token_accuracy(exported, tokenizer, [(e.prompt, e.target) for e in EDITS])
    assert out.metrics.merged.rel == sum(rel) / len(rel)
    provenance = json.loads((out.path / PROVENANCE_FILE).read_text())
    assert provenance["form"] == "merged" and provenance["forced"] is False and provenance["min_loc"] == 0.0
    assert provenance["weights_fingerprint"] != provenance["base_fingerprint"]
    if key == "retrieve":
        assert provenance["merge"]["memories"] == 2 and provenance["merge"]["memories_algorithm"] == "ties"


def test_merged_checkpoint_loads_without_wiseedit(edited, bases, tokenizer, tmp_path):
    result = edited["gpt2"]  # Conv1D: the transposed layout
    folder = export_model(None, result.delta.path, tmp_path / "merged", merged=True, force=True,
                          device="cpu").path
    script = textwrap.dedent(f"""
        import sys, torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
        torch.set_num_threads(1)
        tok = AutoTokenizer.from_pretrained({str(folder)!r})
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r})
        with torch.no_grad():
            out = {{str(i): model(**tok(p, return_tensors="pt")).logits.contiguous()
                   for i, p in enumerate({PROMPTS!r})}}
        save_file(out, {str(tmp_path / "logits.safetensors")!r})
        sys.exit(3 if any(m == "wiseedit" or m.startswith("wiseedit.") for m in sys.modules) else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, **ENV},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]  # 3: wiseedit was imported
    saved = load_file(tmp_path / "logits.safetensors")
    reference = reference_merged(bases["gpt2"], result, tokenizer)
    for i, want in enumerate(logits(reference, tokenizer)):
        assert torch.equal(saved[str(i)], want)


def test_merged_weight_respects_layout_dtype_and_refuses_nan():
    linear = torch.nn.Linear(3, 2).to(torch.bfloat16)
    delta = torch.arange(6, dtype=torch.float32).view(2, 3) / 8  # (out, in)
    merged = merged_weight(linear, delta)
    assert merged.dtype == torch.bfloat16
    assert torch.equal(merged, (linear.weight.float() + delta).to(torch.bfloat16))
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(2, 3)  # weight (in, out) = (3, 2)
    assert torch.equal(merged_weight(conv, delta), conv.weight.detach() + delta.t())
    with pytest.raises(wiseedit.WiseEditError, match="non-finite"):
        merged_weight(linear, torch.full((2, 3), float("inf")))


# -- refusals (CLI) ---------------------------------------------------------------------------------------


def test_load_compare_on_an_exported_folder_needs_no_delta(edited, tokenizer, tmp_path):
    folder = export_model(None, edited["llama"].delta.path, tmp_path / "export", device="cpu").path
    result = CliRunner(env=ENV).invoke(app, ["load", "--model", str(folder), "-p", EDITS[0].prompt,
                                             "--compare", "--max-new-tokens", "3", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["delta"] == str(folder / DELTA_SUBDIR) and document["edits"] == len(EDITS)
    [row] = document["generations"]
    assert row["output"] == edited["llama"].edited.generate([EDITS[0].prompt], 3)[0]
    assert row["output"] != row["base_output"]


def test_load_compare_on_a_merged_export_says_what_to_pass(edited, tmp_path):
    folder = export_model(None, edited["llama"].delta.path, tmp_path / "merged", merged=True, force=True,
                          device="cpu").path
    result = CliRunner(env=ENV).invoke(app, ["load", "--model", str(folder), "-p", "x", "--compare"])
    assert result.exit_code == 2, result.output
    assert "is a merged export" in result.stderr and "--delta" in result.stderr


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env=ENV)
    return lambda *args: runner.invoke(app, ["export", *map(str, args)])


def test_low_merged_loc_is_refused_and_nothing_is_written(run, edited, tmp_path):
    out = tmp_path / "merged"
    result = run("--delta", edited["llama"].delta.path, "--out", out, "--merged", "--min-loc", "1",
                 "--device", "cpu", "--json")
    assert result.exit_code == 1, result.output
    assert not out.exists() and not list(tmp_path.glob(".merged*"))
    document = json.loads(result.stdout)
    assert document["written"] is False and document["metrics"]["merged"]["loc"] < 1
    assert "below --min-loc 1 " in result.stderr and "merged" in result.stderr  # the table, then why


@pytest.mark.parametrize("bar", ["1.01", "-0.5", "inf"])
def test_a_min_loc_outside_0_to_1_is_bad_usage(run, edited, tmp_path, bar):
    result = run("--delta", edited["llama"].delta.path, "--out", tmp_path / "m", "--merged", "--min-loc", bar,
                 "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert "--min-loc should be a number from 0 to 1" in result.stderr and not (tmp_path / "m").exists()


def test_library_refusal_carries_the_metrics(edited, tmp_path):
    with pytest.raises(LocalityTooLow) as refused:
        export_model(None, edited["llama"].delta.path, tmp_path / "m", merged=True, min_loc=1.0, device="cpu")
    assert refused.value.exit_code == 1 and refused.value.metrics.merged is not None
    assert refused.value.metrics.probe_source == "edits"  # EDITS[0] has a locality probe
    assert not (tmp_path / "m").exists()


def test_existing_folder_needs_force_and_stays_unchanged(run, edited, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run("--delta", edited["llama"].delta.path, "--out", out)
    assert result.exit_code == 2 and "already exists" in result.stderr and "--force" in result.stderr
    result = run("--delta", edited["llama"].delta.path, "--out", out, "--force")
    assert result.exit_code == 2 and "not a wiseedit export" in result.stderr  # never replaced, even forced
    assert files(out) == {Path("keep.txt"): b"mine"}


def test_merged_grace_delta_is_bad_usage(run, edited, tmp_path):
    result = run("--delta", edited["grace"].delta.path, "--out", tmp_path / "x", "--merged")
    assert result.exit_code == 2 and "drop --merged" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_out_may_not_replace_the_base_or_the_delta(run, edited, bases):
    for out in (bases["llama"], edited["llama"].delta.path):
        result = run("--delta", edited["llama"].delta.path, "--out", out, "--force")
        assert result.exit_code == 2 and "which the export reads" in result.stderr


def test_export_then_force_replaces_an_earlier_export(run, edited, tmp_path):
    out = tmp_path / "export"
    first = run("--delta", edited["grace"].delta.path, "--out", out, "--device", "cpu", "--json")
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    assert document["written"] and document["form"] == "self-contained" and document["method"] == "grace"
    assert "Rel (2 edits)" in first.stderr
    again = run("--delta", edited["grace"].delta.path, "--out", out, "--device", "cpu")
    assert again.exit_code == 2 and "already exists" in again.stderr
    forced = run("--delta", edited["grace"].delta.path, "--out", out, "--device", "cpu", "--force")
    assert forced.exit_code == 0, forced.output
    model = wiseedit.load(str(out), device="cpu")
    assert model.wiseedit.summary()["method"] == "grace"


def test_help_explains_itself_with_examples(run):
    result = run("--help")
    assert result.exit_code == 0
    assert export_cmd.EXAMPLE in result.stdout and export_cmd.MERGED_EXAMPLE in result.stdout
    for option in ("--delta", "--out", "--merged", "--min-loc", "--force", "--json"):
        assert option in result.stdout


# -- pieces ------------------------------------------------------------------------------------------------


def test_exported_delta_only_for_a_self_contained_export(tmp_path, bases):
    assert exported_delta(bases["llama"]) is None and exported_delta(tmp_path / "missing") is None
    assert exported_delta(None) is None and exported_delta("llama2") is None


def test_probes_come_from_the_edits_else_from_the_neutral_pool():
    probes = probes_from_log([EDITS[0].to_json(), EDITS[1].to_json()])
    assert probes.source == "edits" and probes.locality == [("The capital of Italy is", "Rome")]
    assert probes.edits == [("The capital of France is", "Rome"), ("Bob plays the", "violin")]
    fallback = probes_from_log([EDITS[1].to_json()])
    assert fallback.source == "default-pool" and fallback.locality == neutral_probes()
    assert ("Q: How many days are there in a week? A:", "seven") in neutral_probes()


def test_card_lists_the_first_edits_escaped_and_the_figures():
    edits = [{"seq": i + 1, "prompt": f"Prompt {i} | <b>", "target": f"T{i}"} for i in range(25)]
    metrics = ExportMetrics(Figures(1.0, 0.98), Figures(0.5, 0.25), 25, 50, "default-pool")
    card = model_card(CardFacts(
        name="out", form="merged", base="org/model", hub_id="org/model", base_fingerprint="sha256:ab",
        method="wise", edited_module="model.layers.4.mlp.down_proj", edits=edits, metrics=metrics,
        min_loc=0.2, forced=False, version="1.0", created="2025-01-01T00:00:00Z"))
    assert card.startswith("---\nlibrary_name: transformers\nbase_model: org/model\n")
    assert r"| 1 | Prompt 0 \| &lt;b&gt; | T0 |" in card and "| 20 |" in card and "| 21 |" not in card
    assert "| routed (delta attached) | 1.000 | 0.980 |" in card
    assert "| merged weights (this checkpoint) | 0.500 | 0.250 |" in card
    assert 'AutoModelForCausalLM.from_pretrained("./out")' in card and "trust_remote_code" not in card


def test_remote_code_entry_is_added_and_removed_keeping_others(tmp_path):
    from wiseedit.export.selfcontained import add_remote_code, remove_remote_code

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "auto_map": {"AutoConfig": "x.Y"}}))
    add_remote_code(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "x.Y", "AutoModelForCausalLM": f"modeling_wiseedit.{MODELING_CLASS}"}
    assert "class WiseeditForCausalLM" in (tmp_path / MODELING_FILE).read_text()
    remove_remote_code(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {"AutoConfig": "x.Y"}
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModelForCausalLM": config["auto_map"]
                                                                   ["AutoModelForCausalLM"]}}))
    remove_remote_code(tmp_path)
    assert "auto_map" not in json.loads((tmp_path / "config.json").read_text())
