"""WISE mechanics on tiny models: routing per row, generation, reload, continuation, storage, merging."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import MethodState
from wiseedit.testing import tiny_model, tiny_tokenizer
from wiseedit.testing.generation import greedy_left_padded
from wiseedit.tokens import encode_pairs
from wiseedit.wise.memory import Memory, shard_mask
from wiseedit.wise.merging import dare, linear, ties
from wiseedit.wise.method import WiseMethod, WiseRetrieveMethod
from wiseedit.wise.side_memory import routing_scores

FAST = {"n_iter": 15, "num_templates": 2}  # mechanics only: a short optimisation is enough
EDITS = [
    EditRecord(prompt="The capital of Zorvia is", target="Paris", id="e0"),
    EditRecord(prompt="Alice plays the", target="violin", id="e1"),
    EditRecord(prompt="The colour of the old door is", target="green", id="e2"),
    EditRecord(prompt="Bob works as a", target="nurse", id="e3"),
]
UNRELATED = ["Q: What is water? A:", "The sky is blue and the grass", "Music, art and science are"]



@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def fresh(arch, tok, **kw):
    return tiny_model(arch, tok, ffn_mult=16, **kw)


def logits(model, tok, prompts, method=None):
    enc = encode_pairs(tok, [(p, None) for p in prompts])
    with torch.no_grad():
        return model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits, enc


def greedy(model, tok, prompts, n=4):
    """Left-padded batched greedy generation: the new tokens of each row."""
    out = greedy_left_padded(model, tok, prompts, n)
    return out[:, out.shape[1] - n:]


def roundtrip(state: MethodState, edits=EDITS) -> MethodState:
    """Through JSON and a CPU copy, as a delta directory stores it, with the edits of its log (the first
    `num_edits` of `edits`) given back as a delta gives them."""
    import json

    return MethodState(json.loads(json.dumps(state.config)), {k: v.clone() for k, v in state.tensors.items()},
                       settings=json.loads(json.dumps(state.settings)), edits=list(edits[:state.config["num_edits"]]))


def as_version_1(state: MethodState) -> MethodState:
    """`state` as WISE saved it before memories named their edits by position: each memory's entry
    carries its prompts, and a shard's its targets; no edits are given with it."""
    config = {**state.config, "state_version": 1}
    for key in ("merged", "pending", "current"):
        entries = config[key] if key != "current" else ([config[key]] if config[key] else [])
        for entry in entries:
            start, stop = entry.pop("edits")
            entry["prompts"] = [e.prompt for e in state.edits[start:stop]]
            entry["targets"] = [e.target for e in state.edits[start:stop]] if entry["kind"] == "shard" else []
    return MethodState(config, state.tensors, settings=state.settings)


@pytest.fixture(scope="module")
def edited(tok):
    model = fresh("llama", tok)
    base_logits, _ = logits(model, tok, UNRELATED)
    base_gen = greedy(model, tok, UNRELATED)
    method = WiseMethod.create(model, tok, FAST)
    method.apply(EDITS[:2])
    return model, method, base_logits, base_gen


# -- merging ------------------------------------------------------------------------------------------


def test_routing_score_pools_the_last_routed_token_or_the_mean():
    # distances per token: row 0 = 3, 4 (and padding 100); row 1 = 1, 2, 6 with its last token masked
    delta_out = torch.zeros(2, 3, 2)
    delta_out[0, :, 0] = torch.tensor([3.0, 4.0, 100.0])
    delta_out[1, :, 1] = torch.tensor([1.0, 2.0, 6.0])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    assert routing_scores(delta_out, mask, "last").tolist() == [4.0, 2.0]
    assert routing_scores(delta_out, mask, "mean").tolist() == [3.5, 1.5]
    assert routing_scores(delta_out, None, "last").tolist() == [100.0, 6.0]
    assert routing_scores(delta_out, torch.zeros(2, 3, dtype=torch.bool), "last").tolist() == [0.0, 0.0]


def test_preset_pooling_and_bad_pooling_refused(tok):
    model = fresh("llama", tok)
    assert WiseMethod.create(model, tok, FAST).layer.pooling == "last"
    reference = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "preset": "reference"})
    assert reference.layer.pooling == "mean" and (reference.config.alpha, reference.config.beta) == (5.0, 20.0)
    reference.apply(EDITS[:1])  # the paper's absolute margins run (they train little on a toy: wise.md)
    assert reference.num_edits == 1
    with pytest.raises(BadInputError, match="pooling"):
        WiseMethod.create(fresh("llama", tok), tok, {"pooling": "max"})


def test_ties_keeps_single_shard_entries_and_elects_signs():
    a = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    b = torch.tensor([[0.0, 3.0, 2.0, 0.0]])
    merged = ties([a, b], [0.5, 0.5], density=1.0)
    # entries trained by one shard keep its value; on the conflict (-1 vs 2) the sign of the weighted
    # sum (+1) wins and only the agreeing delta is averaged
    assert torch.equal(merged, torch.tensor([[2.0, 3.0, 2.0, 0.5]]))


def test_ties_trims_to_density_of_nonzero_entries():
    a = torch.tensor([[4.0, -3.0, 2.0, 1.0, 0.0, 0.0]])
    merged = ties([a], [1.0], density=0.5)
    assert torch.equal(merged, torch.tensor([[4.0, -3.0, 0.0, 0.0, 0.0, 0.0]]))


def test_ties_trim_keeps_its_share_of_entries_saturated_at_the_clamp():
    # 6 of 8 trained entries sit at the clamp (+-1): the top half is 4 of them, by position; a cut by
    # value (|d| > the 4th smallest magnitude, 1.0) used to keep none and wipe the shard
    a = torch.tensor([[1.0, -1.0, 0.5, 1.0, 0.0, -1.0, 1.0, 0.25, 1.0, 0.0]])
    merged = ties([a], [1.0], density=0.5)
    assert torch.equal(merged, torch.tensor([[1.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0]]))


def test_linear_and_dare():
    a, b = torch.ones(2, 2), 3 * torch.ones(2, 2)
    assert torch.equal(linear([a, b], [0.5, 0.5]), 2 * torch.ones(2, 2))
    d1, d2 = dare([a], [1.0], density=0.5, seed=3), dare([a], [1.0], density=0.5, seed=3)
    assert torch.equal(d1, d2)                       # reproducible from its seed
    assert set(d1.unique().tolist()) <= {0.0, 2.0}   # dropped, or rescaled by 1/density


# -- storage ------------------------------------------------------------------------------------------


def test_shard_is_saved_as_masked_values_and_restored_exactly():
    shape = (64, 256)
    mask = shard_mask(7, shape, 0.2, "cpu")
    delta = torch.randn(shape) * mask
    memory = Memory(delta=delta, min_score=1.0, act_ratio=0.88, kind="shard", mask_seed=7, prompts=["p"])
    meta, tensors = memory.to_saved("m", 0.2)
    assert tensors["m.values"].numel() == int(mask.sum())
    assert tensors["m.values"].numel() <= 0.3 * delta.numel()
    assert "prompts" not in meta and "targets" not in meta  # the edit log holds them
    back = Memory.from_saved(meta, tensors, "m", torch.Size(shape), 0.2, "cpu", ["p"], ["t"])
    assert torch.equal(back.delta, delta) and (back.prompts, back.targets) == (["p"], ["t"])


def test_shard_delta_file_is_small(edited, tmp_path):
    from safetensors.torch import save_file

    _, method, _, _ = edited
    state = method.state()
    path = tmp_path / "delta.safetensors"
    save_file(state.tensors, str(path))
    shards = len(method.layer.memories)  # the auto shard size on this tiny matrix: one edit each
    assert shards == 2 and all(m.kind == "shard" for m in method.layer.memories)
    dense = method.layer.main_weight.numel() * 4
    assert path.stat().st_size <= 0.3 * dense * shards


# -- routing and generation ---------------------------------------------------------------------------


def test_unrelated_prompts_are_bit_identical_to_base(edited, tok):
    model, method, base_logits, _ = edited
    after, _ = logits(model, tok, UNRELATED)
    assert torch.equal(after, base_logits)


def test_routing_is_per_row_in_a_mixed_batch(edited, tok):
    model, method, _, _ = edited
    prompts = [EDITS[0].prompt, UNRELATED[0], EDITS[1].prompt, UNRELATED[1]]
    batch, enc = logits(model, tok, prompts)
    chosen = method.layer.last_choice.tolist()
    assert chosen[1] == -1 and chosen[3] == -1 and chosen[0] >= 0 and chosen[2] >= 0
    for r, prompt in enumerate(prompts):
        alone, _ = logits(model, tok, [prompt])
        n = int(enc.attention_mask[r].sum())
        torch.testing.assert_close(batch[r, :n], alone[0, :n], rtol=1e-4, atol=1e-4)


def test_generation_keeps_the_prefill_decision_and_mixed_batches_match_one_by_one(edited, tok):
    model, method, _, base_gen = edited
    prompts = [EDITS[0].prompt, UNRELATED[0], EDITS[1].prompt]
    together = greedy(model, tok, prompts)
    for r, prompt in enumerate(prompts):
        assert torch.equal(together[r], greedy(model, tok, [prompt])[0])
    assert torch.equal(together[1], base_gen[0])  # the unrelated row generates exactly as the base


def test_detach_restores_the_base_model(tok):
    model = fresh("llama", tok)
    before, _ = logits(model, tok, [EDITS[0].prompt])
    method = WiseMethod.create(model, tok, FAST)
    method.apply(EDITS[:1])
    method.detach()
    after, _ = logits(model, tok, [EDITS[0].prompt])
    assert torch.equal(before, after)


# -- state --------------------------------------------------------------------------------------------


def test_restore_gives_identical_logits(edited, tok):
    model, method, _, _ = edited
    prompts = [e.prompt for e in EDITS[:2]] + UNRELATED
    expected, _ = logits(model, tok, prompts)
    other = fresh("llama", tok)
    WiseMethod.restore(other, tok, roundtrip(method.state()))
    got, _ = logits(other, tok, prompts)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("cls,save_freq", [(WiseMethod, 2), (WiseRetrieveMethod, 2), (WiseMethod, 4)])
def test_two_runs_equal_one_run(tok, cls, save_freq):
    options = {**FAST, "save_freq": save_freq, "merge_freq": 4}  # 4: the second run rehearses the first's edits
    one = cls.create(fresh("llama", tok), tok, options)
    one.apply(EDITS)
    first = cls.create(fresh("llama", tok), tok, options)
    first.apply(EDITS[:2])
    second = cls.restore(fresh("llama", tok), tok, roundtrip(first.state()))
    second.apply(EDITS[2:])
    a, b = one.state(), second.state()
    assert a.config == b.config
    assert a.tensors.keys() == b.tensors.keys()
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), key


def test_rehearsal_draws_the_current_shards_earlier_edits_and_is_saved(tok):
    method = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "rehearse": 2, "save_freq": 3})
    method.apply(EDITS[:2])
    drawn = method._rehearsed()
    assert sorted((e.prompt, e.target) for e in drawn) == sorted((e.prompt, e.target) for e in EDITS[:2])
    method.apply(EDITS[2:4])  # the first shard is stored after 3 edits; the 4th starts a new one
    assert [(e.prompt, e.target) for e in method._rehearsed()] == [(EDITS[3].prompt, EDITS[3].target)]
    restored = WiseMethod.restore(fresh("llama", tok), tok, roundtrip(method.state()))
    assert restored.pending[0].targets == [e.target for e in EDITS[:3]]
    assert restored.current.targets == [EDITS[3].target]
    old = as_version_1(roundtrip(method.state()))  # a delta saved before rehearsal: prompts, no targets
    del old.config["current"]["targets"]
    continued = WiseMethod.restore(fresh("llama", tok), tok, old)
    assert continued._rehearsed() == []
    continued.apply([EDITS[0]])  # only the edit made since can be rehearsed, with its own target
    assert [(e.prompt, e.target) for e in continued._rehearsed()] == [(EDITS[0].prompt, EDITS[0].target)]
    assert WiseMethod.create(fresh("llama", tok), tok, FAST).config.rehearse == 10  # the auto preset
    reference = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "preset": "reference"})
    assert reference.config.rehearse == 0  # the paper trains each edit alone
    for bad in (-1, 1.5, True):
        with pytest.raises(BadInputError, match="rehearse"):
            WiseMethod.create(fresh("llama", tok), tok, {"rehearse": bad})


def test_activation_cache_is_exact(tok):
    deltas = []
    for cached in (True, False):
        method = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "cache_activations": cached,
                                                               "early_stop_loss": 0.0})
        method.apply(EDITS[:1])
        deltas.append(method.layer.memories[0].delta)
    torch.testing.assert_close(deltas[0], deltas[1], rtol=1e-4, atol=1e-5)


# -- shards -------------------------------------------------------------------------------------------


def test_shards_are_stored_then_merged(tok):
    method = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "save_freq": 1, "merge_freq": 2})
    method.apply(EDITS[:1])
    assert len(method.pending) == 1 and method.current is None and not method.merged
    method.apply(EDITS[1:2])
    assert len(method.merged) == 1 and not method.pending
    assert method.merged[0].prompts == [EDITS[0].prompt, EDITS[1].prompt]


@pytest.mark.parametrize("per_step", [1, 2])
def test_batch_mode_merges_where_one_edit_per_step_does(tok, per_step):
    # save_freq 2, merge_freq 3: the merge falls at edit 3, inside a 2-edit group (edits 3-4) that
    # used to step over it and leave both shards pending
    method = WiseMethod.create(fresh("llama", tok), tok,
                               {**FAST, "save_freq": 2, "merge_freq": 3, "edits_per_step": per_step})
    method.apply(EDITS[:4])
    assert (len(method.merged), len(method.pending), method.num_edits) == (1, 1, 4)
    assert method.merged[0].prompts == [e.prompt for e in EDITS[:3]]


def test_dare_drops_do_not_line_up_with_the_next_shard_mask(tok):
    # a DARE merge keeps each entry with probability `density`; the entries of the next shard's mask
    # that the merged shard trained must be kept at that rate, not always (a shared seed did that)
    method = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "merge_algorithm": "dare", "save_freq": 1})
    method._start_shard()
    shape = method.current.delta.shape
    trained = shard_mask(method.current.mask_seed, shape, 0.2, "cpu")
    method.current.delta = trained.float()
    method.current.prompts.append(EDITS[0].prompt)
    method.merge_pending()
    method._start_shard()
    both = trained & shard_mask(method.current.mask_seed, shape, 0.2, "cpu")
    kept = (method.merged[0].delta.cpu() != 0)[both].float().mean().item()
    assert both.sum() > 200 and abs(kept - 0.53) < 0.1


def test_retrieve_keeps_one_memory_per_merge(tok):
    method = WiseRetrieveMethod.create(fresh("llama", tok), tok, {**FAST, "save_freq": 1, "merge_freq": 1})
    method.apply(EDITS[:3])
    assert len(method.merged) == 3 and not method.pending


def test_merge_pending_on_demand_includes_the_current_shard(tok):
    method = WiseMethod.create(fresh("llama", tok), tok, {**FAST, "save_freq": 3})
    method.apply(EDITS[:2])
    assert method.merge_pending("ties") == 1
    assert len(method.merged) == 1 and method.current is None


# -- architectures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "gptj"])
def test_modules_with_bias_and_conv1d(arch, tok):
    model = fresh(arch, tok)
    base, _ = logits(model, tok, UNRELATED)
    method = WiseMethod.create(model, tok, FAST)
    if arch == "gpt2":
        assert type(method.layer.base).__name__ == "Conv1D"
    assert method.layer.base.bias is not None
    method.apply(EDITS[:1])
    # the delta is kept (out, in) like nn.Linear even where the module stores its weight transposed
    w = method.layer.base.weight
    assert method.layer.memories[0].delta.shape == (w.t().shape if arch == "gpt2" else w.shape)
    after, _ = logits(model, tok, UNRELATED)
    assert torch.equal(after, base)


# -- what default settings achieve on tiny models (issue 26's first bar) --------------------------------

@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gpt2", "gptj"])
@pytest.mark.parametrize("vocabulary,seed,vocab_size", [("people", 0, 1000), ("things", 0, 1000), ("cities", 1, 1000),
                                                        ("people", 3, 300), ("things", 4, 300)])
def test_ten_sequential_edits_are_recalled_with_default_settings(arch, vocabulary, seed, vocab_size):
    """10 edits of a generated set one after another, default settings, everything measured through
    plain forwards (no query mask, as any scoring pipeline runs them): every edit recalled
    (teacher-forced) and the predictions on 50 unrelated prompts made of the edits' own words kept.
    A 300-token vocabulary spells most targets letter by letter, so a token repeats inside a target
    (" T|o|k|y|o"); `things` seed 0 holds " w|o|o|d" (docs/wise.md, "Repeated tokens").
    scripts/wise_edit_sets.py runs every set (docs/wise.md)."""
    from wiseedit.evaluation.metrics import agreement, argmax_predictions, token_accuracy
    from wiseedit.testing.edit_sets import edit_set

    tok = tiny_tokenizer(vocab_size=vocab_size)
    edits, unrelated = edit_set(seed, vocabulary)
    probes = [(u, "x") for u in unrelated]
    model = tiny_model(arch, tok, ffn_mult=16)
    before = argmax_predictions(model, tok, probes)
    WiseMethod.create(model, tok).apply(edits)
    rel = token_accuracy(model, tok, [(e.prompt, e.target) for e in edits])
    loc = agreement(before, argmax_predictions(model, tok, probes))
    assert sum(rel) / len(rel) >= 0.99
    assert sum(loc) / len(loc) >= 0.95


# -- the auto preset's sizes and thresholds -------------------------------------------------------------


def test_shard_size_follows_the_memory_size(tok):
    from wiseedit.wise.config import shard_edits

    # about 10,000 trained entries per edit at mask_ratio 0.2, between 1 and the paper's 500
    assert [shard_edits(0.2, n) for n in (64 * 1024, 128 * 768, 128 * 4096, 4096 * 11008)] == [1, 2, 10, 500]
    assert shard_edits(1.0, 128 * 768) == 10
    model = fresh("llama", tok)  # down projection 64 x 1024
    assert WiseMethod.create(model, tok).config.save_freq == 1
    assert WiseMethod.create(fresh("llama", tok), tok, {"save_freq": 7}).config.save_freq == 7
    merge, retrieve = (cls.create(fresh("llama", tok), tok, {"mask_ratio": 1.0}).config
                       for cls in (WiseMethod, WiseRetrieveMethod))
    assert (merge.save_freq, merge.merge_freq) == (7, 1000)
    assert (retrieve.save_freq, retrieve.merge_freq) == (7, 7)  # each shard a memory of its own
    reference = WiseMethod.create(fresh("llama", tok), tok, {"preset": "reference"}).config
    assert (reference.save_freq, reference.merge_freq) == (500, 1000)


def test_context_similarity_is_the_median_over_tokens_in_other_contexts():
    from wiseedit.wise.key_threshold import auto_key_threshold, context_similarity

    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0],
                                                       [0.8, 0.6]]), dim=-1)
    ids = torch.tensor([5, 5, 5, 9, 9])
    previous = torch.tensor([1, 2, 1, 3, 4])
    texts = torch.tensor([0, 1, 2, 3, 4])
    # token 5: pairs (0,1) .6 and (1,2) .8; (0,2) has the same previous token; token 9: (3,4) .8
    assert context_similarity(keys, ids, previous, texts) == pytest.approx(0.8)
    assert math.isnan(context_similarity(keys, ids, previous, torch.zeros(5, dtype=torch.long)))  # one text
    assert auto_key_threshold(float("nan")) == 0.8
    assert auto_key_threshold(0.1) == 0.8 and auto_key_threshold(0.87) == pytest.approx(0.97)
    assert auto_key_threshold(0.95) == 0.99


@pytest.mark.parametrize("arch,low,high", [("llama", 0.8, 0.8), ("gpt2", 0.8, 0.8), ("gptj", 0.93, 0.99)])
def test_key_threshold_is_measured_at_the_first_edit_and_saved(tok, arch, low, high):
    method = WiseMethod.create(fresh(arch, tok), tok, FAST)
    assert method.config.key_threshold is None
    method.apply(EDITS[:1])
    assert low <= method.config.key_threshold <= high
    assert method.layer.key_threshold == method.config.key_threshold
    assert method.state().settings["key_threshold"] == method.config.key_threshold
    chosen = WiseMethod.create(fresh(arch, tok), tok, {**FAST, "key_threshold": 0.5})
    chosen.apply(EDITS[:1])
    assert chosen.config.key_threshold == 0.5


# -- the input preconditioner (wiseedit/wise/preconditioner.py) ------------------------------------------


def _orthonormal(n: int, dim: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, n, generator=torch.Generator().manual_seed(seed)))
    return q.t()                                                          # (n, dim) orthonormal rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_preconditioner_keeps_sgd_where_inputs_are_apart(seed):
    """Orthogonal inputs of equal norm (every eigenvalue 1): the step is SGD's, for a gradient in
    their span and for one outside it."""
    from wiseedit.wise.preconditioner import InputPreconditioner

    x = 3.0 * _orthonormal(6, 40, seed)                                   # (6, 40)
    pre = InputPreconditioner(x)
    grad = torch.randn(5, 40, generator=torch.Generator().manual_seed(seed + 10))
    torch.testing.assert_close(pre(grad), grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cosine", [0.9, 0.99, 0.999])
def test_preconditioner_moves_nearly_parallel_inputs_apart_at_a_lone_tokens_rate(cosine):
    """Two inputs of cosine c want opposite outputs: SGD moves their difference by the eigenvalue
    1 - c of the pair's difference (in units of a lone token's move); the preconditioned step by
    min(1, MAX_GAIN (1 - c)), and their common direction as SGD does."""
    from wiseedit.wise.preconditioner import MAX_GAIN, InputPreconditioner

    u, v = _orthonormal(2, 32, 0)
    x = torch.stack([u, cosine * u + (1 - cosine ** 2) ** 0.5 * v])      # unit rows, cosine c
    pre = InputPreconditioner(x)
    h2 = 1.0
    for p, k in (([1.0, -1.0], 1 - cosine), ([1.0, 1.0], 1 + cosine)):   # difference, common direction
        p = torch.tensor(p)[:, None]                                      # (2, out=1) output gradients
        grad = p.t() @ x                                                  # (1, 32) SGD's gradient
        sgd = (x @ grad.t()).squeeze(1) / h2                              # output moves (2,)
        ours = (x @ pre(grad).t()).squeeze(1) / h2
        gain = min(1 / k, MAX_GAIN) if k < 1 else 1.0
        torch.testing.assert_close(sgd, k * p.squeeze(1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours, gain * k * p.squeeze(1), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("options,precondition,clamp", [
    ({}, True, float("inf")),
    ({"norm_constraint": 2.0}, True, 2.0),
    ({"router": "norm"}, False, 1.0),
    ({"preset": "reference"}, False, 1.0),
])
def test_the_norm_router_and_the_reference_train_with_plain_sgd_and_the_papers_clamp(tok, options,
                                                                                    precondition, clamp):
    """The key router (auto) preconditions and does not clamp; the norm router, which decides by the
    memory's response, and the reference preset train as the paper: SGD, the delta within +- 1.0."""
    method = WiseMethod.create(tiny_model("llama", tok), tok, options)
    method.scale = {"R": 1.0, "H2": 1.0}
    hyper = method._hyper()
    assert (hyper.precondition, hyper.norm_constraint) == (precondition, clamp)
