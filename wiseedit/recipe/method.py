"""RECIPE as an :class:`~wiseedit.methods.base.EditingMethod`.

Editing is one encoder pass per batch of knowledge statements and an append to the store; the LLM is
never changed. At inference every forward pass (teacher-forced or ``generate``'s prefill) encodes each
row's query tokens, retrieves the top-1 stored edit, and prefixes its prompt vectors when it beats the
Knowledge Sentinel (see :mod:`wiseedit.recipe.prefix`).

What is saved where: the trained networks belong to the meta-training checkpoint (one per base LLM,
shared by every edit set); a delta holds the store only (``keys``, ``prompts``, the ids in its config)
and names its checkpoint by absolute path (relative to the delta directory inside a ``wiseedit export``
folder, which carries a copy) and the sha256 of its weights, checked on restore. A moved checkpoint
can be pointed to by editing ``method_settings.checkpoint`` in the delta's ``wiseedit_config.json``.

Options (``create``, checked by :class:`~wiseedit.recipe.edit_config.RecipeEditConfig`): ``checkpoint`` (required: a checkpoint folder or a training ``out_dir``),
``index`` (``"exact"`` or ``"hnsw"``, see :mod:`wiseedit.recipe.store`), ``query_cache_size`` (query
keys remembered per token sequence, so repeated prompts are encoded once), and the gate that decides
whether the top-1 edit's prompt is used:

- ``gate="cosine"`` (the default; ours): the top-1 edit by cosine is used when its cosine with the query
  exceeds ``cosine_ratio`` (default 0.9) times the cosine of that edit's own prompt with it, recorded
  when the edit is applied, *and* it beats the sentinel as below. Each edit thus gets its own bar, as
  WISE's router takes its threshold from the edits' own activations; the sentinel keeps its veto,
  which matters where meta-training was short and every text looks alike by cosine. On the world
  model at T = 1000 it lets 2.7% of unrelated prompts through where the sentinel alone lets 98% through
  (docs/recipe.md, "A bar per edit").
- ``gate="sentinel"`` (the paper's rule): the top-1 edit by scaled dot product is used when its
  similarity exceeds the Knowledge Sentinel's by more than ``sentinel_offset`` (default 0; higher is
  stricter: fewer unrelated prompts touched, fewer rephrasings recalled). A delta saved before the
  gate was an option keeps this rule.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from wiseedit.devices import input_device
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.recipe.checkpoint import META_FILE, WEIGHTS_FILE, load_networks, weights_sha256
from wiseedit.recipe.edit_config import GATE_METRICS, RecipeEditConfig
from wiseedit.recipe.networks import RecipeNetworks, statement
from wiseedit.recipe.prefix import PromptInjector
from wiseedit.recipe.store import KnowledgeStore

STATE_VERSION = 1


@dataclass(frozen=True)
class Retrieval:
    """What one query retrieves (:meth:`RecipeMethod.lookup`)."""

    id: str | None  # the top-1 stored edit (None: the store is empty)
    margin: float  # gate "sentinel": its similarity minus the sentinel's; "cosine": its cosine minus
                   # cosine_ratio x its own prompt's cosine
    hit: bool  # whether its prompt is prefixed: margin > sentinel_offset ("sentinel"); margin > 0 and
               # its similarity above the sentinel's by more than sentinel_offset ("cosine")


class RecipeMethod(EditingMethod):
    """Retrieval-augmented continuous prompts over a frozen LLM."""

    name = "recipe"
    config_class = RecipeEditConfig

    def __init__(self, model, tokenizer, networks: RecipeNetworks, checkpoint: Path, checkpoint_sha256: str,
                 config: RecipeEditConfig):
        super().__init__(model, tokenizer)
        self.networks = networks.eval()
        self.checkpoint, self.checkpoint_sha256 = checkpoint, checkpoint_sha256
        self.config = config
        cfg = networks.config
        self.store = KnowledgeStore(cfg.d_r, cfg.prompt_tokens, networks.d_llm, input_device(model), config.index,
                                    metric=GATE_METRICS[config.gate])
        with torch.no_grad():
            self._sentinel = networks.sentinel_key().to(input_device(model))  # (d_r,): fixed after training
        self._query_cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.injector = PromptInjector(model, self._retrieve, cfg.prompt_tokens, lambda: self._query_mask)
        self.injector.attach()

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> RecipeMethod:
        config = RecipeEditConfig.from_options(options)  # whether the checkpoint exists: checked here
        networks, _, path = load_networks(config.checkpoint, llm=model, device=input_device(model))
        config.checkpoint = str(path.resolve())
        return cls(model, tokenizer, networks, path.resolve(), weights_sha256(path), config)

    @classmethod
    def restore(cls, model, tokenizer, state: MethodState) -> RecipeMethod:
        saved = state.config
        if saved.get("version") != STATE_VERSION:
            raise BadInputError(f"RECIPE state version {saved.get('version')} is not readable by this "
                                f"wiseedit (version {STATE_VERSION})")
        # a delta of format 1 keeps its options in the state; one saved before the gate was an option was
        # made with the sentinel's
        settings = state.settings if state.settings is not None else {"gate": "sentinel", **saved["options"]}
        config = RecipeEditConfig.from_options(settings)
        path = Path(config.checkpoint)
        if not path.is_absolute() and state.folder is not None:
            path = (Path(state.folder) / path).resolve()  # a checkpoint bundled inside the delta (wiseedit export)
        if not (path / META_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise BadInputError(f"the RECIPE checkpoint {path} this delta was made with is missing (moved, "
                                "deleted, or pruned by further training): put it back there, or set "
                                "method_settings.checkpoint in the delta's wiseedit_config.json "
                                "(method_state.options.checkpoint in a delta of format 1) to where it is now")
        sha = weights_sha256(path)
        if sha != saved["checkpoint_sha256"]:
            raise BadInputError(f"the RECIPE checkpoint {path} is not the one this delta was made with "
                                f"(weights {sha[:19]}..., expected {saved['checkpoint_sha256'][:19]}...)")
        networks, _, _ = load_networks(path, llm=model, device=input_device(model))
        method = cls(model, tokenizer, networks, path, sha, config)
        method.store.load(saved["ids"], state.tensors)
        if config.gate == "cosine" and bool(method.store.own_cosines.isnan().any()):
            raise BadInputError("this RECIPE delta was saved before wiseedit recorded each edit's own-prompt "
                                "cosine, which gate=cosine needs: use gate=sentinel, or apply its edits again")
        return method

    def fresh(self) -> RecipeMethod:
        """An empty store over the same loaded checkpoint: no reload, no re-hash (about 1 s for MiniLM)."""
        return RecipeMethod(self.model, self.tokenizer, self.networks, self.checkpoint, self.checkpoint_sha256,
                            replace(self.config))

    # -- editing ------------------------------------------------------------------------------------

    def apply(self, edits: Sequence[EditRecord], progress: ProgressFn | None = None) -> None:
        size = self.networks.config.encode_batch_size
        for start in range(0, len(edits), size):
            group = edits[start:start + size]
            keys, prompts, own = self._encode(group)
            self.store.add([e.id for e in group], keys, prompts, own)
            if progress:
                progress(start + len(group), len(edits))

    def remove(self, ids: Sequence[str]) -> int:
        """Forget the edits `ids` (their rows leave the store); returns how many were removed."""
        return self.store.remove(ids)

    def replace(self, edit: EditRecord) -> None:
        """Re-teach the stored edit with ``edit.id`` as `edit` (its row keeps its place)."""
        keys, prompts, own = self._encode([edit])
        self.store.replace(edit.id, keys[0], prompts[0], own[0])

    @torch.no_grad()
    def _encode(self, edits: Sequence[EditRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Knowledge keys (B, d_r), prompts (B, l, d_llm) and own-prompt cosines (B,) of `edits`: the
        cosine of each edit's prompt, as the query inference will compute from its tokens, with its key."""
        keys, prompts = self.networks.knowledge([statement(e.prompt, e.target) for e in edits])
        keys, prompts = keys.float(), prompts.float()
        queries = self._query_keys([tuple(self.tokenizer(e.prompt)["input_ids"]) for e in edits])
        return keys, prompts, F.cosine_similarity(queries, keys.to(queries), dim=1)

    # -- inference ----------------------------------------------------------------------------------

    @torch.no_grad()
    def _retrieve(self, input_ids: torch.Tensor, query_mask: torch.Tensor):
        """Per row: the prompt (l, d) of the top-1 edit and whether it beat the sentinel."""
        B = input_ids.shape[0]
        cfg = self.networks.config
        prompts = torch.zeros(B, cfg.prompt_tokens, self.networks.d_llm, device=self.store.keys.device)
        hit = torch.zeros(B, dtype=torch.bool, device=self.store.keys.device)
        tokens = [tuple(input_ids[r][query_mask[r]].tolist()) for r in range(B)]
        present = [r for r in range(B) if tokens[r]]
        if not len(self.store) or not present:
            return prompts, hit
        _, rows, passed = self._top1([tokens[r] for r in present])  # (P,), (P,)
        chosen = torch.tensor(present, device=hit.device)
        hit[chosen] = passed
        prompts[chosen] = self.store.prompts[rows]  # rows >= 0: the store is not empty
        return prompts, hit

    @torch.no_grad()
    def lookup(self, prompts: Sequence[str]) -> list[Retrieval]:
        """What each prompt, given alone, retrieves: its top-1 stored edit and that edit's margin over
        the gate (see :class:`Retrieval`). For calibration and debugging: why an unrelated prompt
        changed, how close a neighbour came."""
        if not prompts:
            return []
        margins, rows, passed = self._top1([tuple(self.tokenizer(p)["input_ids"]) for p in prompts])
        ids = self.store.ids
        return [Retrieval(ids[r] if r >= 0 else None, m, h)
                for m, r, h in zip(margins.tolist(), rows.tolist(), passed.tolist())]

    def _top1(self, token_rows: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per token sequence: the top-1 row's margin over the gate (see :class:`Retrieval`), the row
        (-inf and -1 when the store is empty), and whether it passes the gate: ((P,), (P,), (P,)).
        Passing is strict: a tie keeps the base model."""
        queries = self._query_keys(token_rows)  # (P, d_r)
        scores, rows = self.store.search(queries)  # (P,), (P,)
        if not len(self.store):
            return scores, rows, torch.zeros_like(rows, dtype=torch.bool)  # nothing to retrieve
        scale = self.networks.config.d_r ** 0.5
        sentinel = queries @ self._sentinel / scale  # (P,)
        offset = self.config.sentinel_offset
        if self.config.gate == "sentinel":
            return scores - sentinel, rows, scores - sentinel > offset
        margin = scores - self.config.cosine_ratio * self.store.own_cosines[rows]  # (P,)
        beats = (queries * self.store.keys[rows]).sum(dim=1) / scale - sentinel  # the sentinel's test, same row
        return margin, rows, (margin > 0) & (beats > offset)

    def _query_keys(self, token_rows: list[tuple[int, ...]]) -> torch.Tensor:
        """Query keys (P, d_r) of token sequences, through a bounded cache keyed by the tokens."""
        missing = list(dict.fromkeys(t for t in token_rows if t not in self._query_cache))
        if missing:
            texts = [self.tokenizer.decode(list(t), skip_special_tokens=True) for t in missing]
            keys = self.networks.query_keys(texts).float().to(self._sentinel.device)
            for t, key in zip(missing, keys):
                self._query_cache[t] = key
        out = []
        for t in token_rows:
            self._query_cache.move_to_end(t)
            out.append(self._query_cache[t])
        while len(self._query_cache) > self.config.query_cache_size:
            self._query_cache.popitem(last=False)
        return torch.stack(out)

    # -- saving -------------------------------------------------------------------------------------

    def state(self) -> MethodState:
        saved = {"version": STATE_VERSION, "checkpoint_sha256": self.checkpoint_sha256, "ids": list(self.store.ids),
                 "recipe_config": self.networks.config.to_dict()}
        return MethodState(config=saved, tensors=self.store.tensors(), settings=self.config.to_dict())

    def detach(self) -> None:
        self.injector.detach()

    def summary(self) -> dict:
        cfg = self.networks.config
        return {"method": self.name, "edits": len(self.store), "checkpoint": str(self.checkpoint),
                "encoder": cfg.encoder, "d_r": cfg.d_r, "prompt_tokens": cfg.prompt_tokens,
                "index": self.config.index, "gate": self.config.gate}

