"""WISE as an :class:`~wiseedit.methods.base.EditingMethod`: WISE-Merge (``wise``) and WISE-Retrieve
(``wise-retrieve``).

Bookkeeping of the lifelong run (wise.md §5): edits train the *current* shard (its own random mask);
every ``save_freq`` edits the shard is stored as *pending* and a fresh one starts; every
``merge_freq`` edits the pending shards are merged. WISE-Merge merges them into one consolidated memory
(weighing the previous one ``merge_keep_weight``); WISE-Retrieve merges each group into one more
memory. Pending shards are routed like any memory until merged, so no edit is ever out of reach.
Every piece of state lives on this object and is saved by :meth:`state` (each memory's edits as their
positions in the delta's edit log: :mod:`wiseedit.wise.saved`); randomness is derived from (seed, edit
number) or (seed, shard number), so two runs of 5 edits equal one run of 10.
"""

from __future__ import annotations

import math

import random
from collections.abc import Sequence

import torch

from wiseedit.edits.record import EditRecord
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.models.modules import get_weight_module, set_module
from wiseedit.models.presets import edited_module_path
from wiseedit.wise.activation_cache import decoder_layers_of
from wiseedit.wise.batch import build_batch, build_prompt_batch
from wiseedit.wise.config import WiseConfig, resolved
from wiseedit.data.irrelevant import default_pool
from wiseedit.wise.irrelevant import irrelevant_row
from wiseedit.wise.key_threshold import auto_key_threshold, context_similarity
from wiseedit.wise.memory import Memory, merge_seed, shard_mask, shard_mask_seed
from wiseedit.wise.merging import merge
from wiseedit.wise.partial_forward import run_until
from wiseedit.wise.routing import install_call_hook
from wiseedit.wise.saved import edit_ranges, memory_texts
from wiseedit.wise.side_memory import SideMemoryLayer
from wiseedit.wise.templates import generate_templates
from wiseedit.wise.trainer import Hyper, ShardTrainer

#: 2: memories name their edits by position in the edit log; 1: they carried their prompts and targets.
STATE_VERSION = 2


class WiseMethod(EditingMethod):
    """WISE-Merge: one consolidated side memory, plus the shards not merged yet."""

    name = "wise"
    config_class = WiseConfig
    restores_from_edits = True
    retrieve = False

    def __init__(self, model, tokenizer, config: WiseConfig, module_path: str, templates: list[str],
                 scale: dict | None = None):
        super().__init__(model, tokenizer)
        self.config = config
        self.module_path = module_path
        self.templates = templates
        self.scale = scale              # {"R": ..., "H2": ...}, measured at the first edit (auto preset)
        self.num_edits = 0
        self.num_shards = 0             # shards started so far (the current one included)
        self.merged: list[Memory] = []  # WISE-Merge: at most one; WISE-Retrieve: one per merge
        self.pending: list[Memory] = []
        self.current: Memory | None = None
        self._input_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # prompt -> inputs, mask
        base = get_weight_module(model, module_path)
        # deltas saved before these options: the paper's router, mean pooling
        self.layer = SideMemoryLayer(base, config.router or "norm", config.key_threshold or 1.0)
        self.layer.pooling = config.pooling or "mean"
        set_module(model, module_path, self.layer)
        self._hook = install_call_hook(model.base_model, self.layer, special_ids=tokenizer.all_special_ids)
        self.decoder_layers, self.layer_index = decoder_layers_of(model, module_path)
        self._trainer: ShardTrainer | None = None  # made at the first edit

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> WiseMethod:
        config = WiseConfig.from_options(options)
        config.retrieve = config.retrieve or cls.retrieve
        module_path = edited_module_path(model.config, layer=config.layer, module=config.module)
        templates = generate_templates(model, tokenizer, config.num_templates)
        entries = get_weight_module(model, module_path).weight.numel()
        return cls(model, tokenizer, resolved(config, model.config, entries), module_path, templates)

    @classmethod
    def restore(cls, model, tokenizer, state: MethodState) -> WiseMethod:
        s = state.config
        settings = state.settings if state.settings is not None else s["config"]  # older deltas: in the state
        method = cls(model, tokenizer, WiseConfig.from_options(settings), s["module"], s["templates"], s["scale"])
        method.num_edits, method.num_shards = s["num_edits"], s["num_shards"]
        shape = method.layer.main_weight.shape
        device = method.layer.main_weight.device
        if "center" in state.tensors:
            method.layer.center = state.tensors["center"].float().to(device)

        entries = s["merged"] + s["pending"] + ([s["current"]] if s["current"] else [])
        texts = iter(memory_texts(entries, state, s["num_edits"]))

        def load(meta, prefix):
            prompts, targets = next(texts)  # merged memories rehearse nothing: no targets, as when made
            return Memory.from_saved(meta, state.tensors, prefix, shape, method.config.mask_ratio, device,
                                     prompts, targets if meta["kind"] == "shard" else [])

        method.merged = [load(m, f"merged.{i}") for i, m in enumerate(s["merged"])]
        method.pending = [load(m, f"pending.{i}") for i, m in enumerate(s["pending"])]
        method.current = load(s["current"], "current") if s["current"] else None
        for memory in method._memories():
            if memory.keys is None and memory.prompts and method.layer.center is not None:
                memory.keys = method._keys(memory.prompts)  # saved before the key router
        method._sync()
        return method

    # -- editing ------------------------------------------------------------------------------------

    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        step = max(1, self.config.edits_per_step)
        done = 0
        while done < len(edits):
            # a group never straddles a shard boundary or a merge
            room = min(self.config.save_freq - self.num_edits % self.config.save_freq,
                       self.config.merge_freq - self.num_edits % self.config.merge_freq)
            group = list(edits[done: done + min(step, room)])
            self._train_group(group)
            done += len(group)
            if progress:
                progress(done, len(edits))

    def _train_group(self, edits: list[EditRecord]) -> None:
        cfg = self.config
        if self.current is None:
            self._start_shard()
        irrelevant = [irrelevant_row(e.irrelevant, cfg.seed, self.num_edits + i) for i, e in enumerate(edits)]
        irrelevant += self._replay_rows(len(edits))
        device = self.model.get_input_embeddings().weight.device
        batch = build_batch(self.tokenizer, edits, self.templates, irrelevant, self._rehearsed()).to(device)
        if self.scale is None:
            self.scale = self._measure_scale(batch)
        if self.layer.center is None:
            self._measure_pool()
        mask = shard_mask(self.current.mask_seed, self.current.delta.shape, cfg.mask_ratio,
                          self.current.delta.device)
        if self._trainer is None:  # one per method: it keeps which fast path this model allows
            self._trainer = ShardTrainer(self.model, self.layer, self.decoder_layers, self.layer_index)
        result = self._trainer.train(batch, self.current.delta, mask, self._hyper(), cached=cfg.cache_activations)
        self.current.delta = result.delta
        self.current.prompts.extend(e.prompt for e in edits)
        self.current.targets.extend(e.target for e in edits)
        self.current.keys = _rows(self.current.keys, self._keys([e.prompt for e in edits]))
        self.current.min_score = self._min_score(self.current.delta, self.current.prompts)
        self.num_edits += len(edits)
        if self.num_edits % cfg.save_freq == 0:
            self.pending.append(self.current)
            self.current = None
        if self.num_edits % cfg.merge_freq == 0 and self.pending:
            self.merge_pending()
        self._sync()

    def _start_shard(self) -> None:
        w = self.layer.main_weight
        self.current = Memory(delta=torch.zeros(w.shape, dtype=torch.float32, device=w.device),
                              min_score=float("inf"), act_ratio=self.config.act_ratio, kind="shard",
                              mask_seed=shard_mask_seed(self.config.seed, self.num_shards))
        self.num_shards += 1

    def _rehearsed(self) -> list[EditRecord]:
        """Up to ``rehearse`` earlier edits of the current shard, drawn from (seed, edit number): trained
        again as plain rows (no templates) so that a shard keeps its earlier edits while learning new ones."""
        targets = self.current.targets
        if not self.config.rehearse or not targets:
            return []
        # targets belong to the last prompts: a shard begun before rehearsal existed has none for the rest
        prompts = self.current.prompts[len(self.current.prompts) - len(targets):]
        rng = random.Random(f"{self.config.seed}:rehearse:{self.num_edits}")
        drawn = rng.sample(range(len(targets)), min(self.config.rehearse, len(targets)))
        return [EditRecord(prompt=prompts[i], target=targets[i], id=f"rehearsed-{i}") for i in drawn]

    def _replay_rows(self, count: int) -> list[str]:
        """WISE-Retrieve's replay: earlier memories' prompts join the rows the new shard must ignore."""
        if not (self.config.retrieve and self.config.replay):
            return []
        old = [p for m in self.merged + self.pending for p in m.prompts]
        rng = random.Random(f"{self.config.seed}:replay:{self.num_edits}")
        return [rng.choice(old) for _ in range(count)] if old else []

    def _hyper(self) -> Hyper:
        cfg = self.config
        clamp = math.inf if cfg.norm_constraint is None else cfg.norm_constraint  # None: no clamp (auto)
        if cfg.preset == "auto":
            s, h2 = self.scale["R"], self.scale["H2"]
            return Hyper(cfg.n_iter, cfg.lr * s * s / h2, cfg.weight_decay, cfg.alpha * s, cfg.beta * s,
                         cfg.gamma * s, 1.0 / s, clamp, cfg.early_stop_loss, cfg.early_stop_delta,
                         precondition=cfg.router == "key")
        return Hyper(cfg.n_iter, cfg.lr, cfg.weight_decay, cfg.alpha, cfg.beta, cfg.gamma, 1.0,
                     clamp, cfg.early_stop_loss, cfg.early_stop_delta, precondition=False)

    @torch.no_grad()
    def _module_inputs(self, input_ids, attention_mask, layer_output: dict | None = None) -> torch.Tensor:
        """The edited module's input (B, T, in) for a batch, with the side memories out of the way.
        With `layer_output` given, also records there the hidden state (B, T, d) after the edited layer."""
        captured = {}
        hooks = [self.layer.register_forward_pre_hook(lambda mod, args: captured.__setitem__("h", args[0]))]
        if layer_output is not None:
            def keep(mod, args, out):
                layer_output["hidden"] = out[0] if isinstance(out, tuple) else out
            hooks.append(self.decoder_layers[self.layer_index].register_forward_hook(keep))
        saved, self.layer.memories = self.layer.memories, []
        try:  # ended as soon as what is asked for is recorded
            run_until(lambda: self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False),
                      self.decoder_layers[self.layer_index] if layer_output is not None else self.layer,
                      after=layer_output is not None)
        finally:
            self.layer.memories = saved
            for hook in hooks:
                hook.remove()
        return captured["h"]

    def _measure_scale(self, batch) -> dict:
        """The units of the auto preset, on the first edit's prompt tokens: R = mean norm of the
        residual stream after the edited layer (what an edit must move), H2 = mean squared norm of
        the edited module's input."""
        out: dict = {}
        h = self._module_inputs(batch.input_ids, batch.attention_mask, layer_output=out)
        rows = batch.prompt_mask[: batch.num_edit_rows]                        # (B, T) on the input device
        tokens = h[: batch.num_edit_rows][rows.to(h.device)]                   # (N, in)
        hidden = out["hidden"][: batch.num_edit_rows][rows.to(out["hidden"].device)]  # (N, d)
        return {"R": hidden.float().norm(dim=-1).mean().item(), "H2": tokens.float().pow(2).sum(-1).mean().item()}

    def _measure_pool(self) -> None:
        """On the neutral pool's tokens (no special tokens): the centre, the module's mean input (in,);
        and, for the auto preset's key router, the key threshold from how much context moves a key
        (:mod:`wiseedit.wise.key_threshold`), kept in the config that the delta saves."""
        device = self.model.get_input_embeddings().weight.device
        enc = build_prompt_batch(self.tokenizer, list(default_pool()), ["{}"])
        h = self._unpadded_inputs(enc.input_ids.to(device), enc.attention_mask.to(device))
        tokens = enc.prompt_mask.to(h.device).bool()                         # (B, T)
        self.layer.center = h[tokens].float().mean(0)
        if self.config.key_threshold is None:
            ids = enc.input_ids.to(h.device)
            previous = torch.nn.functional.pad(ids, (1, 0), value=-1)[:, :-1]  # (B, T) the token before
            texts = torch.arange(ids.shape[0], device=h.device)[:, None].expand_as(ids)
            similarity = context_similarity(self.layer.key_of(h[tokens]), ids[tokens], previous[tokens],
                                            texts[tokens])
            self.config.key_threshold = self.layer.key_threshold = auto_key_threshold(similarity)

    def _unpadded_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: int = 16) -> torch.Tensor:
        """:meth:`_module_inputs` of a right-padded batch (B, T), run in chunks of `rows` rows of
        similar length, each cut to its longest row (the neutral pool's texts are 17-47 tokens: 42%
        less padding); zero at the padding."""
        lengths = attention_mask.sum(1)                                       # (B,)
        h = None
        for chunk in lengths.argsort(stable=True).split(rows):
            width = int(lengths[chunk].max())
            part = self._module_inputs(input_ids[chunk, :width], attention_mask[chunk, :width])  # (b, w, in)
            if h is None:
                h = part.new_zeros((*input_ids.shape, part.shape[-1]))
            h[chunk.to(h.device), :width] = part
        return h

    # -- merging ------------------------------------------------------------------------------------

    def merge_pending(self, algorithm: str | None = None) -> int:
        """Merge the pending shards (and the current one if it holds edits): WISE-Merge into the
        consolidated memory, WISE-Retrieve into one new memory. Returns how many shards were merged."""
        cfg = self.config
        if self.current is not None and self.current.prompts:
            self.pending.append(self.current)
            self.current = None
        if not self.pending:
            return 0
        shards = self.pending
        k = len(shards)
        if not cfg.retrieve and self.merged:
            parts = [self.merged[0]] + shards
            weights = [cfg.merge_keep_weight] + [(1 - cfg.merge_keep_weight) / k] * k
        else:
            parts, weights = shards, [1.0 / k] * k
        delta = merge(algorithm or cfg.merge_algorithm, [p.delta for p in parts], weights, cfg.density,
                      seed=merge_seed(cfg.seed, self.num_shards))
        prompts = [p for part in parts for p in part.prompts]
        keys = None
        for part in parts:
            keys = _rows(keys, part.keys)
        merged = Memory(delta=delta, min_score=self._min_score(delta, prompts), act_ratio=cfg.act_ratio,
                        kind="merged", prompts=prompts, keys=keys)
        self.merged = self.merged + [merged] if cfg.retrieve else [merged]
        self.pending = []
        self._sync()
        return k

    def _min_score(self, delta: torch.Tensor, prompts: list[str]) -> float:
        """The lowest routing score of `prompts` (as the user will send them, with no template)
        under `delta`: a memory's threshold is act_ratio times this, recomputed whenever the memory
        changes, so a later edit that lowers an earlier edit's score cannot silently drop it."""
        return min(self.layer.scores(self.layer.delta_out(h, delta), delta, mask).min().item()
                   for h, mask in self._prompt_inputs(prompts))

    def _keys(self, prompts: list[str]) -> torch.Tensor:
        """The key router's keys (len(prompts), in): each prompt's centred, unit-length module input at
        its last routing token, the prompt alone as the user sends it (one prompt per forward)."""
        keys = []
        for h, mask in self._prompt_inputs(prompts):                        # (B, T, in), (B, T)
            positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = positions.masked_fill(~mask.bool(), -1).amax(1).clamp_min(0)  # (B,)
            keys.append(self.layer.key_of(h[torch.arange(h.shape[0], device=h.device), last.to(h.device)]))
        return torch.cat(keys)

    def _prompt_inputs(self, prompts: list[str], chunk: int = 64):
        """(module input (B, T, in), routing mask (B, T)) for `prompts`, in chunks; cached per prompt
        (inputs below the edited module never change), so re-scoring a memory is one matmul."""
        device = self.model.get_input_embeddings().weight.device
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._input_cache:
                # one prompt per forward: batched with others, padding changes the last bits of its
                # inputs, and a continued run (other prompts missing together) would score differently
                enc = build_prompt_batch(self.tokenizer, [prompt], ["{}"])
                h = self._module_inputs(enc.input_ids.to(device), enc.attention_mask.to(device))
                self._input_cache[prompt] = (h[0], enc.prompt_mask[0].to(device))
        for start in range(0, len(prompts), chunk):
            rows = [self._input_cache[p] for p in prompts[start:start + chunk]]
            width = max(x.shape[0] for x, _ in rows)
            h = torch.stack([torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[0])) for x, _ in rows])
            mask = torch.stack([torch.nn.functional.pad(m, (0, width - m.shape[0])) for _, m in rows])
            yield h, mask

    # -- state --------------------------------------------------------------------------------------

    def _memories(self) -> list[Memory]:
        """Every memory, in the order they hold the edits: merged, pending, then the current shard."""
        return self.merged + self.pending + ([self.current] if self.current else [])

    def _sync(self) -> None:
        """Give the layer the memories to route among, in a fixed order (a new shard not yet trained is left out)."""
        self.layer.memories = [m for m in self._memories() if m is not self.current or m.prompts]

    def state(self) -> MethodState:
        tensors: dict[str, torch.Tensor] = {}

        ranges = iter(edit_ranges([len(m.prompts) for m in self._memories()]))  # they hold the edits in this order

        def save(memory, prefix):
            meta, t = memory.to_saved(prefix, self.config.mask_ratio)
            tensors.update(t)
            return meta | {"edits": next(ranges)}

        if self.layer.center is not None:
            tensors["center"] = self.layer.center.detach().float().cpu().contiguous()
        config = {
            "state_version": STATE_VERSION, "module": self.module_path,
            "templates": self.templates, "scale": self.scale, "num_edits": self.num_edits,
            "num_shards": self.num_shards,
            "merged": [save(m, f"merged.{i}") for i, m in enumerate(self.merged)],
            "pending": [save(m, f"pending.{i}") for i, m in enumerate(self.pending)],
            "current": save(self.current, "current") if self.current else None,
        }
        return MethodState(config=config, tensors=tensors, settings=self.config.to_dict())

    @property
    def seed(self) -> int:
        """Mask seeds, irrelevant-row draws and replay draws derive from it."""
        return self.config.seed

    def detach(self) -> None:
        self._hook.remove()
        set_module(self.model, self.module_path, self.layer.base)

    def summary(self) -> dict:
        return {"method": self.name, "edits": self.num_edits, "module": self.module_path,
                "merged_memories": len(self.merged), "pending_shards": len(self.pending),
                "current_shard_edits": len(self.current.prompts) if self.current else 0,
                "thresholds": [round(m.threshold, 6) for m in self.layer.memories]}


class WiseRetrieveMethod(WiseMethod):
    """WISE-Retrieve: every merge adds a memory; the router picks the top-1 memory per input."""

    name = "wise-retrieve"
    retrieve = True


def _rows(first: torch.Tensor | None, more: torch.Tensor | None) -> torch.Tensor | None:
    """`first` and `more` stacked along rows, either may be None."""
    if first is None or more is None:
        return more if first is None else first
    return torch.cat([first, more.to(first.device)])

