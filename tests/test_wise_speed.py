"""WISE's fast training path (wiseedit.wise.upper_stack): exact to float tolerance against the full
forward, checked against the model before use, and doing per step only what the delta changes."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from wiseedit.edits.record import EditRecord
from wiseedit.testing import tiny_model, tiny_tokenizer
from wiseedit.wise import upper_stack
from wiseedit.wise.batch import build_batch
from wiseedit.wise.method import WiseMethod
from wiseedit.wise.preconditioner import MAX_GAIN

EDITS = [
    EditRecord(prompt="The capital of Zorvia is", target="Paris", id="e0"),
    EditRecord(prompt="Alice plays the", target="violin", id="e1"),
    EditRecord(prompt="The colour of the old door is", target="green", id="e2"),
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def trained(tok, arch, cached, n_iter=6, **options):
    model = tiny_model(arch, tok, ffn_mult=8)
    # one shard for both edits (the second rehearses the first), whatever the auto shard size
    method = WiseMethod.create(model, tok, {"n_iter": n_iter, "num_templates": 2, "early_stop_loss": 0.0,
                                            "cache_activations": cached, "save_freq": 3, **options})
    method.apply(EDITS[:2])
    return method


# (arch, options): default modules, a module whose output is not the layer's (up_proj: no shortcut),
# the attention output, the top layer itself, and a layer with two layers above it
CASES = [("llama", {}), ("mistral", {}), ("qwen2", {}), ("gpt2", {}), ("gptj", {}),
         ("llama", {"module": "model.layers.4.mlp.up_proj"}), ("llama", {"module": "model.layers.4.self_attn.o_proj"}),
         ("llama", {"layer": 5}), ("qwen2", {"layer": 2}), ("llama", {"pooling": "mean"})]


@pytest.mark.parametrize("arch,options", CASES)
def test_fast_path_trains_the_same_delta_as_the_full_forward(tok, arch, options):
    fast, full = (trained(tok, arch, cached, **options).current.delta for cached in (True, False))
    assert fast.abs().max() > 0
    # the two sum in different orders; the preconditioner raises rounding along nearly parallel
    # inputs up to MAX_GAIN times, as it raises the gradient there
    torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-5 * MAX_GAIN)


def _calls(module, into: list):
    """Record the shape of each call's first input (positional or the only keyword tensor)."""
    def record(mod, args, kwargs, out):
        first = args[0] if args else kwargs.get("hidden_states", kwargs.get("input_ids"))
        into.append(tuple(first.shape))
    return module.register_forward_hook(record, with_kwargs=True)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_layers_up_to_the_edited_one_run_once_per_edit_not_once_per_step(tok, arch):
    """The embeddings and the edited layer's attention run a fixed number of times per edit however
    many steps it takes; the full forward runs them at every step."""
    counts = []
    for n_iter in (3, 9):
        model = tiny_model(arch, tok, ffn_mult=8)
        method = WiseMethod.create(model, tok, {"n_iter": n_iter, "num_templates": 2, "early_stop_loss": 0.0})
        layer = method.decoder_layers[method.layer_index]
        embeds, attention = [], []
        hooks = [_calls(model.get_input_embeddings(), embeds),
                 _calls(getattr(layer, "self_attn", None) or layer.attn, attention)]
        method.apply(EDITS[:1])
        for hook in hooks:
            hook.remove()
        counts.append((len(embeds), len(attention)))
    assert counts[0] == counts[1]


def test_top_layer_mlp_sees_only_the_positions_the_loss_reads(tok):
    """Per step, the top layer's MLP runs on the N positions before the target tokens, not (B, T):
    four more steps are four more (N, d) calls and no more (B, T, d) ones."""
    counts = []
    for n_iter in (2, 6):
        model = tiny_model("llama", tok, ffn_mult=8)
        method = WiseMethod.create(model, tok, {"n_iter": n_iter, "num_templates": 2, "early_stop_loss": 0.0})
        shapes: list = []
        hook = _calls(method.decoder_layers[-1].mlp, shapes)
        method.apply(EDITS[1:2])
        hook.remove()
        batch = build_batch(tok, EDITS[1:2], method.templates, ["x"])
        n_targets = int((batch.labels != -100).sum())
        counts.append((shapes.count((n_targets, model.config.hidden_size)), len([s for s in shapes if len(s) == 3])))
    assert counts[1][0] - counts[0][0] == 4
    assert counts[1][1] == counts[0][1]


def _stack(tok, arch, module=None):
    model = tiny_model(arch, tok, ffn_mult=8)
    method = WiseMethod.create(model, tok, {"num_templates": 2, **({"module": module} if module else {})})
    method.layer.center = None
    batch = build_batch(tok, EDITS[:1], method.templates, ["Unrelated words here"])
    rows, cols = (batch.labels != -100).nonzero(as_tuple=True)
    return upper_stack.UpperStack.verified(model, method.decoder_layers, method.layer_index, method.layer,
                                           batch, rows, cols - 1, method.layer.main_weight)[0]


@pytest.mark.parametrize("arch,module,expected", [
    ("llama", None, (True, True)),                              # down_proj: both shortcuts
    ("llama", "model.layers.4.mlp.up_proj", (False, False)),  # not added to the residual: no shortcut
    ("gpt2", None, (True, False)),                              # not a Llama-family top layer
    ("mistral", None, (True, True)),                            # grouped-query attention
    ("qwen2", None, (True, True)),
])
def test_each_shortcut_is_used_only_where_it_agrees_with_the_model(tok, arch, module, expected):
    stack = _stack(tok, arch, module)
    assert (stack.shortcut, stack.top_subset) == expected


def test_a_top_layer_that_disagrees_is_not_used(tok, monkeypatch):
    """A wrong fast top layer (here: off by a constant) is caught by the check against the model."""
    right = upper_stack.top_layer_at
    monkeypatch.setattr(upper_stack, "top_layer_at", lambda *a: right(*a) + 1e-2)
    stack = _stack(tok, "llama")
    assert (stack.shortcut, stack.top_subset) == (False, False)


def test_the_fast_path_is_checked_once_per_method(tok, monkeypatch):
    """Which shortcuts hold is the architecture's property: the first edit checks them against the
    model, later edits reuse the answer (the check is a full forward and up to two fast ones)."""
    model = tiny_model("llama", tok, ffn_mult=8)
    method = WiseMethod.create(model, tok, {"num_templates": 1, "n_iter": 3})
    seen, verified = [], upper_stack.UpperStack.verified.__func__

    def spy(cls, *args, **kwargs):
        seen.append(args[-1] if len(args) > 8 else kwargs.get("known", "unknown"))
        return verified(cls, *args, **kwargs)

    monkeypatch.setattr(upper_stack.UpperStack, "verified", classmethod(spy))
    for edit in EDITS[:3]:
        method.apply([edit])
    assert seen == ["unknown", (True, True), (True, True)]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_templates_take_one_generation_per_seed_and_match_one_per_template(tok, arch):
    """The 5-token template is the start of the 10-token greedy run: half the generate calls, same text."""
    from wiseedit.wise.templates import TEMPLATE_LENGTHS, TEMPLATE_SEEDS, generate_templates

    model = tiny_model(arch, tok, seed=3)
    expected = ["{}"]
    for length in TEMPLATE_LENGTHS:  # one greedy run per template, as the reference code does
        for seed in TEMPLATE_SEEDS:
            enc = tok(seed, return_tensors="pt")
            out = model.generate(**enc, max_new_tokens=length, min_new_tokens=length, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            text = (seed + tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)).strip()
            expected.append(f"{text.replace('{', ' ').replace('}', ' ').strip()}. {{}}")
    calls = []
    generate = model.generate
    model.generate = lambda **kw: calls.append(kw["max_new_tokens"]) or generate(**kw)
    for count in (10, 7, 3):
        calls.clear()
        assert generate_templates(model, tok, count) == expected[: count + 1]
        assert len(calls) == min(count, len(TEMPLATE_SEEDS))


def test_a_top_layer_that_cannot_be_called_this_way_is_not_used(tok, monkeypatch):
    def refuse(*args):
        raise TypeError("unexpected keyword argument")

    monkeypatch.setattr(upper_stack, "top_layer_at", refuse)
    stack = _stack(tok, "llama")
    assert (stack.shortcut, stack.top_subset) == (False, False)


def test_recording_the_module_input_stops_the_forward_there(tok):
    """The forwards that record the edited module's input (keys, thresholds, centre) end at the
    module: the same tensor as a full forward's, and the layers above it never run."""
    model = tiny_model("llama", tok, ffn_mult=8)
    method = WiseMethod.create(model, tok, {"num_templates": 1})
    enc = build_batch(tok, EDITS[:2], ["{}"], ["Unrelated words here"])
    seen, above = {}, []
    hook = method.layer.register_forward_pre_hook(lambda mod, args: seen.__setitem__("h", args[0]))
    with torch.no_grad():
        model(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
    hook.remove()
    hook = method.decoder_layers[method.layer_index + 1].register_forward_pre_hook(lambda *a: above.append(1))
    h = method._module_inputs(enc.input_ids, enc.attention_mask)
    hook.remove()
    assert torch.equal(h, seen["h"])
    assert above == []
