"""wiseedit.models: resolving names offline, loading, presets, module paths and base fingerprints."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no test touches the network

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, GPTJConfig, LlamaConfig, MistralConfig, Qwen2Config

import wiseedit.models.loading as loading_module
import wiseedit.models.resolve as resolve_module
from wiseedit.errors import BadInputError
from wiseedit.models import (
    HUB_ALIASES,
    base_fingerprint,
    builtin_path,
    default_layer,
    edited_module_path,
    get_module,
    load_base,
    preset_for,
    resolve_model,
    set_module,
)
from wiseedit.models.fingerprint import legacy_fingerprint, same_base
from wiseedit.testing.tiny import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer

NOT_FOUND = ("is not a local folder, a known alias, or a Hugging Face id in the local cache (no network "
             "here): download it where you have a network and pass its folder, or point HF_HOME at a cache "
             "that has it")
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tokenizer):
    """A tiny Llama saved with save_pretrained (model + tokenizer), shared by the loading tests."""
    folder = tmp_path_factory.mktemp("llama")
    tiny_model("llama", tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(PROMPT, return_tensors="pt")).logits


def _fake_cache(cache, hub_id, source_dir=None, commit="0123456789abcdef0123456789abcdef01234567"):
    """A hub cache entry laid out like huggingface_hub's (refs/main -> snapshots/<commit>)."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source_dir.iterdir() if source_dir else []:
        (snapshot / f.name).symlink_to(f)
    return snapshot


# --- resolving names ---------------------------------------------------------------------------------
def test_aliases_map_to_the_reference_hub_ids():
    expected = {"llama2": "meta-llama/Llama-2-7b-hf", "llama3": "meta-llama/Meta-Llama-3-8B",
                "mistral": "mistralai/Mistral-7B-v0.1", "qwen2.5": "Qwen/Qwen2.5-7B",
                "gpt-j": "EleutherAI/gpt-j-6b", "gpt2-xl": "openai-community/gpt2-xl"}
    assert {alias: HUB_ALIASES[alias] for alias in expected} == expected
    with pytest.raises(TypeError):
        HUB_ALIASES["mine"] = "x/y"  # read-only: no module-level mutable state
    assert builtin_path("world").parts[-4:] == ("wiseedit", "world", "assets", "model")


def test_alias_resolves_through_the_local_cache(tmp_path, llama_dir):
    snapshot = _fake_cache(tmp_path, "meta-llama/Llama-2-7b-hf", llama_dir)
    source = resolve_model("LLaMA2", cache_dir=tmp_path)
    assert (source.hub_id, source.path, source.builtin) == ("meta-llama/Llama-2-7b-hf", snapshot, False)
    assert source.revision == snapshot.name
    by_id = resolve_model("meta-llama/Llama-2-7b-hf", cache_dir=tmp_path)
    assert by_id.path == snapshot and by_id.name == "meta-llama/Llama-2-7b-hf"
    # A snapshot folder passed directly still knows its hub id and revision.
    assert resolve_model(str(snapshot)).hub_id == "meta-llama/Llama-2-7b-hf"


def test_uncached_names_give_one_sentence_on_how_to_provide_them(tmp_path):
    with pytest.raises(BadInputError) as error:
        resolve_model("someorg/some-model", cache_dir=tmp_path)
    assert str(error.value) == f"model 'someorg/some-model' {NOT_FOUND}"
    with pytest.raises(BadInputError, match=r"^model 'llama2' \(meta-llama/Llama-2-7b-hf\) is not in the local "
                                            r"Hugging Face cache \(no network here\): download it"):
        resolve_model("llama2", cache_dir=tmp_path)
    with pytest.raises(BadInputError, match="no weights"):  # a cache that holds only the config
        snapshot = _fake_cache(tmp_path, "org/config-only")
        (snapshot / "config.json").write_text("{}")
        resolve_model("org/config-only", cache_dir=tmp_path)


def test_bad_local_folders_are_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"^model folder '\./no-such-model' does not exist"):
        resolve_model("./no-such-model")
    with pytest.raises(BadInputError, match="has no config.json: pass the folder that holds config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_world_alias_is_the_builtin_folder(monkeypatch, tmp_path, llama_dir):
    monkeypatch.setattr(resolve_module, "builtin_path", lambda name: tmp_path / "missing" if name == "world" else None)
    with pytest.raises(BadInputError, match="built-in model 'world' is not installed"):
        resolve_model("world")
    monkeypatch.setattr(resolve_module, "builtin_path", lambda name: llama_dir if name == "world" else None)
    source = resolve_model("world")
    assert source.builtin and source.path == llama_dir and source.hub_id is None


# --- loading -----------------------------------------------------------------------------------------
def test_load_base_round_trip_gives_the_same_logits(llama_dir, tokenizer):
    original = tiny_model("llama", tokenizer)
    loaded = load_base(str(llama_dir), device="cpu")
    assert not loaded.model.training
    assert loaded.source.path == llama_dir
    assert next(loaded.model.parameters()).dtype == torch.float32  # dtype auto on CPU
    assert torch.equal(_logits(loaded.model, loaded.tokenizer), _logits(original, tokenizer))
    assert loaded.fingerprint == base_fingerprint(original)


def test_load_base_keeps_the_modules_plain_pytorch(llama_dir, monkeypatch):
    # transformers 5.25 kernelizes by default (use_kernels); the methods must see the forward they patch
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    loaded = load_base(str(llama_dir), device="cpu")
    assert getattr(loaded.model, "use_kernels", False) is False
    mlp = loaded.model.model.layers[0].mlp
    assert "forward" not in vars(mlp)


def test_load_base_bf16_keeps_the_fingerprint_and_sets_a_missing_pad(tmp_path, tokenizer):
    original = tiny_model("gpt2", tokenizer)
    original.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = tmp_path / "tokenizer_config.json"  # saved without a pad token, as Llama/GPT-2 ship
    config.write_text(config.read_text().replace('"pad_token": "<pad>"', '"pad_token": null'))
    loaded = load_base(str(tmp_path), device="cpu", dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.fingerprint == base_fingerprint(original)
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "</s>"


def test_load_base_rejects_bad_options(llama_dir):
    with pytest.raises(BadInputError, match="dtype 'float8' is not supported"):
        load_base(str(llama_dir), device="cpu", dtype="float8")
    with pytest.raises(BadInputError, match="device 'gpu0' is not a device"):
        load_base(str(llama_dir), device="gpu0")


def test_auto_device_spreads_only_a_model_too_large_for_one_gpu(monkeypatch, llama_dir):
    weights = (llama_dir / "model.safetensors").stat().st_size  # float32 on disk
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (int(weights / 0.85) + 1, 0))
    cuda = torch.device("cuda")
    assert loading_module._device_map(llama_dir, cuda, torch.float32, automatic=True) == "cuda:0"
    assert loading_module._device_map(llama_dir, cuda, torch.bfloat16, automatic=True) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (weights, 0))
    assert loading_module._device_map(llama_dir, cuda, torch.float32, automatic=True) == "auto"
    assert loading_module._device_map(llama_dir, cuda, torch.bfloat16, automatic=True) == "cuda:0"
    assert loading_module._device_map(llama_dir, cuda, torch.float32, automatic=False) == "cuda"


# --- presets and module paths ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_preset_module_exists_and_avoids_first_two_and_last_layer(arch, tokenizer):
    model = tiny_model(arch, tokenizer)  # 6 layers
    path = edited_module_path(model.config)
    module = get_module(model, path)
    assert isinstance(module, nn.Module) and path.rsplit(".", 1)[-1] in {"down_proj", "fc_out", "c_proj"}
    assert default_layer(model.config) not in {0, 1, 5}
    assert f".{default_layer(model.config)}." in path
    assert preset_for(model.config).activation_of(model.config) in {"silu", "gelu_new"}


def test_default_layers_match_the_reference_on_full_size_configs():  # configs only, no weights
    assert default_layer(LlamaConfig(num_hidden_layers=32)) == 27
    assert default_layer(MistralConfig(num_hidden_layers=32)) == 27
    assert default_layer(Qwen2Config(num_hidden_layers=28)) == 23
    assert default_layer(GPTJConfig(n_layer=28)) == 21
    assert edited_module_path(GPTJConfig(n_layer=28)) == "transformer.h.21.mlp.fc_out"
    assert edited_module_path(GPT2Config(n_layer=48)) == "transformer.h.38.mlp.c_proj"
    assert edited_module_path(LlamaConfig(num_hidden_layers=32), layer=29) == "model.layers.29.mlp.down_proj"
    assert preset_for(GPTJConfig()).wise.alpha == 15 and preset_for(GPT2Config()).wise.n_iter == 40


def test_explicit_module_and_layer_checks():
    config = LlamaConfig(num_hidden_layers=32)
    assert edited_module_path(config, module="model.layers[20].mlp.up_proj") == "model.layers.20.mlp.up_proj"
    assert edited_module_path(config, layer=3, module="model.layers.{i}.mlp.gate_proj") == \
        "model.layers.3.mlp.gate_proj"
    with pytest.raises(BadInputError, match="layer 32 is out of range: this model has 32 layers, numbered 0 to 31"):
        edited_module_path(config, layer=32)
    with pytest.raises(BadInputError, match="both module"):
        edited_module_path(config, layer=3, module="model.layers.20.mlp.down_proj")


def test_unknown_architecture_says_to_pass_module():
    config = SimpleNamespace(model_type="xyz", num_hidden_layers=12)
    with pytest.raises(BadInputError) as error:
        edited_module_path(config)
    # the library names the option, the command line its flag
    assert str(error.value) == ("architecture 'xyz' has no preset: give the option module with the path of the "
                                "FFN value module to edit (e.g. model.layers.20.mlp.down_proj)")
    assert error.value.for_cli() == ("architecture 'xyz' has no preset: pass --module with the path of the FFN "
                                     "value module to edit (e.g. model.layers.20.mlp.down_proj)")
    assert edited_module_path(config, module="blocks.9.ffn.out") == "blocks.9.ffn.out"


def test_get_and_set_module_by_path(tokenizer):
    model = tiny_model("llama", tokenizer)
    with pytest.raises(BadInputError, match=r"module 'model.layers.9.mlp.down_proj' does not exist in this "
                                            r"LlamaForCausalLM: did you mean model.layers.0.mlp.down_proj"):
        get_module(model, "model.layers.9.mlp.down_proj")
    new = nn.Linear(64, 32, bias=False)
    old = set_module(model, "model.layers[3].mlp.down_proj", new)
    assert isinstance(old, nn.Linear) and old is not new
    assert model.model.layers[3].mlp.down_proj is new
    with pytest.raises(BadInputError, match="does not exist"):
        set_module(model, "model.layers.3.mlp.dwn_proj", new)


# --- fingerprints ------------------------------------------------------------------------------------
def test_fingerprint_identifies_the_weights(tokenizer):
    first, second = tiny_model("llama", tokenizer), tiny_model("llama", tokenizer)
    fingerprint = base_fingerprint(first)
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 64
    assert base_fingerprint(second) == fingerprint
    assert base_fingerprint(tiny_model("llama", tokenizer, seed=1)) != fingerprint
    with torch.no_grad():
        weight = second.model.layers[2].mlp.down_proj.weight
        weight[3, 7] = -weight[3, 7]  # one sampled value across zero
    assert base_fingerprint(second) != fingerprint
    for dtype in (torch.bfloat16, torch.float16):
        assert base_fingerprint(tiny_model("llama", tokenizer).to(dtype)) == fingerprint


@pytest.mark.parametrize("seed", range(4))
def test_fingerprint_tells_a_slightly_changed_model_apart_and_ignores_the_load_dtype(tokenizer, seed):
    """A change much smaller than any fine-tune (noise of 1e-3 of each matrix's spread, on one layer)
    moves the fingerprint; rounding every value to float16 or bfloat16 does not (v1 moved with float16)."""
    model = tiny_model("llama", tokenizer, seed=seed)
    fingerprint = base_fingerprint(model)
    for dtype in (torch.float16, torch.bfloat16):
        assert base_fingerprint(tiny_model("llama", tokenizer, seed=seed).to(dtype)) == fingerprint
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.model.layers[seed % 4].parameters():
            if param.dim() == 2:
                param += torch.randn(param.shape, generator=generator) * param.std() * 1e-3
    assert base_fingerprint(model) != fingerprint


def test_a_v1_fingerprint_is_still_accepted(tokenizer):
    model = tiny_model("llama", tokenizer)
    assert same_base(legacy_fingerprint(model), model) and same_base(base_fingerprint(model), model)
    assert not same_base(legacy_fingerprint(tiny_model("llama", tokenizer, seed=1)), model)


def test_fingerprint_of_large_tensors_is_a_strided_sample_and_dtype_independent():
    torch.manual_seed(0)
    model = nn.Linear(512, 300)  # 153,600 weights: above the 65,536 sample
    fingerprint = base_fingerprint(model)
    assert base_fingerprint(nn.Linear(512, 300)) != fingerprint  # another random init
    assert base_fingerprint(model.to(torch.bfloat16)) == fingerprint
    assert base_fingerprint(model.to(torch.float16)) == fingerprint


def test_fingerprint_reads_offloaded_parameters(llama_dir, tokenizer, tmp_path):
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu",
                  "model.layers.2": "disk", "model.layers.3": "cpu", "model.layers.4": "cpu",
                  "model.layers.5": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"}
    offloaded = AutoModelForCausalLM.from_pretrained(llama_dir, device_map=device_map, offload_folder=tmp_path,
                                                     dtype=torch.float32, local_files_only=True)
    assert any(p.device.type == "meta" for p in offloaded.parameters())
    assert base_fingerprint(offloaded) == base_fingerprint(tiny_model("llama", tokenizer))
