"""RECIPE as an :class:`~wiseedit.methods.base.EditingMethod`.

Editing is one encoder pass per batch of knowledge statements and an append to the store; the LLM is
never changed. At inference every forward pass (teacher-forced or ``generate``'s prefill) encodes each
row's query tokens, retrieves the top-1 stored edit, and prefixes its prompt vectors when it beats the
Knowledge Sentinel (see :mod:`wiseedit.recipe.prefix`).

What is saved where: the trained networks belong to the meta-training checkpoint (one per base LLM,
shared by every edit set); a delta holds the store only (``keys``, ``prompts``, the ids in its config)
and names its checkpoint by absolute path (relative to the delta directory inside a ``wiseedit export``
folder, which carries a copy) and the sha256 of its weights, checked on restore. A moved checkpoint
can be pointed to by editing ``options.checkpoint`` in the delta's saved method config.

Options (``create``): ``checkpoint`` (required: a checkpoint folder or a training ``out_dir``),
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

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import get_args

import torch
import torch.nn.functional as F

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.recipe.checkpoint import META_FILE, WEIGHTS_FILE, load_networks, weights_sha256
from wiseedit.recipe.networks import RecipeNetworks, statement
from wiseedit.recipe.prefix import PromptInjector
from wiseedit.recipe.store import IndexKind, KnowledgeStore

STATE_VERSION = 1
_OPTIONS = MappingProxyType({"checkpoint": None, "index": "exact", "query_cache_size": 4096,
                             "gate": "cosine", "sentinel_offset": 0.0, "cosine_ratio": 0.9})
#: The gates, and the store metric each ranks by.
_GATES = MappingProxyType({"sentinel": "dot", "cosine": "cosine"})


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

    def __init__(self, model, tokenizer, networks: RecipeNetworks, checkpoint: Path, checkpoint_sha256: str,
                 options: dict):
        super().__init__(model, tokenizer)
        self.networks = networks.eval()
        self.checkpoint, self.checkpoint_sha256 = checkpoint, checkpoint_sha256
        self.options = options
        cfg = networks.config
        self.store = KnowledgeStore(cfg.d_r, cfg.prompt_tokens, networks.d_llm, _device(model), options["index"],
                                    metric=_GATES[options["gate"]])
        with torch.no_grad():
            self._sentinel = networks.sentinel_key().to(_device(model))  # (d_r,): fixed after training
        self._query_cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.injector = PromptInjector(model, self._retrieve, cfg.prompt_tokens, lambda: self._query_mask)
        self.injector.attach()

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def check_options(cls, options: dict) -> None:
        """What :meth:`create` refuses before it needs the model: unknown keys, no ``checkpoint``, a value of
        the wrong type or out of range (whether the checkpoint exists is checked when it is loaded)."""
        _create_options(options)

    @classmethod
    def create(cls, model, tokenizer, options: dict | None = None) -> RecipeMethod:
        options = _create_options(options)
        networks, _, path = load_networks(options["checkpoint"], llm=model, device=_device(model))
        options["checkpoint"] = str(path.resolve())
        return cls(model, tokenizer, networks, path.resolve(), weights_sha256(path), options)

    @classmethod
    def restore(cls, model, tokenizer, state: MethodState) -> RecipeMethod:
        saved = state.config
        if saved.get("version") != STATE_VERSION:
            raise BadInputError(f"RECIPE state version {saved.get('version')} is not readable by this "
                                f"wiseedit (version {STATE_VERSION})")
        path = Path(saved["options"]["checkpoint"])
        if not path.is_absolute() and state.folder is not None:
            path = (Path(state.folder) / path).resolve()  # a checkpoint bundled inside the delta (wiseedit export)
        if not (path / META_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise BadInputError(f"the RECIPE checkpoint {path} this delta was made with is missing (moved, "
                                "deleted, or pruned by further training): put it back there, or set "
                                "method_state.options.checkpoint in the delta's wiseedit_config.json to "
                                "where it is now")
        sha = weights_sha256(path)
        if sha != saved["checkpoint_sha256"]:
            raise BadInputError(f"the RECIPE checkpoint {path} is not the one this delta was made with "
                                f"(weights {sha[:19]}..., expected {saved['checkpoint_sha256'][:19]}...)")
        networks, _, _ = load_networks(path, llm=model, device=_device(model))
        # a delta saved before the gate was an option was made with the sentinel's
        options = _resolved_options({"gate": "sentinel", **saved["options"]})
        method = cls(model, tokenizer, networks, path, sha, options)
        method.store.load(saved["ids"], state.tensors)
        if method.options["gate"] == "cosine" and bool(method.store.own_cosines.isnan().any()):
            raise BadInputError("this RECIPE delta was saved before wiseedit recorded each edit's own-prompt "
                                "cosine, which gate=cosine needs: use gate=sentinel, or apply its edits again")
        return method

    def fresh(self) -> RecipeMethod:
        """An empty store over the same loaded checkpoint: no reload, no re-hash (about 1 s for MiniLM)."""
        return RecipeMethod(self.model, self.tokenizer, self.networks, self.checkpoint, self.checkpoint_sha256,
                            dict(self.options))

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
        offset = self.options["sentinel_offset"]
        if self.options["gate"] == "sentinel":
            return scores - sentinel, rows, scores - sentinel > offset
        margin = scores - self.options["cosine_ratio"] * self.store.own_cosines[rows]  # (P,)
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
        while len(self._query_cache) > self.options["query_cache_size"]:
            self._query_cache.popitem(last=False)
        return torch.stack(out)

    # -- saving -------------------------------------------------------------------------------------

    def state(self) -> MethodState:
        config = {"version": STATE_VERSION, "options": dict(self.options),
                  "checkpoint_sha256": self.checkpoint_sha256, "ids": list(self.store.ids),
                  "recipe_config": self.networks.config.to_dict()}
        return MethodState(config=config, tensors=self.store.tensors())

    def detach(self) -> None:
        self.injector.detach()

    def summary(self) -> dict:
        cfg = self.networks.config
        return {"method": self.name, "edits": len(self.store), "checkpoint": str(self.checkpoint),
                "encoder": cfg.encoder, "d_r": cfg.d_r, "prompt_tokens": cfg.prompt_tokens,
                "index": self.options["index"], "gate": self.options["gate"]}


def _create_options(options: dict | None) -> dict:
    """The options :meth:`RecipeMethod.create` works with: :func:`_resolved_options`, with a checkpoint."""
    options = _resolved_options(options)
    if options["checkpoint"] is None:
        raise BadInputError("RECIPE needs a meta-trained checkpoint for this model: give the option "
                            "checkpoint=<folder> (made by wiseedit train-recipe)")
    return options


def _resolved_options(options: dict | None) -> dict:
    """`options` over the defaults; BadInputError (one sentence) for an unknown key or a value of the wrong
    type or out of range."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise BadInputError(f"unknown RECIPE option(s): {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    checkpoint = options.get("checkpoint")
    if checkpoint is not None and (not isinstance(checkpoint, (str, PathLike)) or not str(checkpoint).strip()):
        raise BadInputError(f"RECIPE option checkpoint must be a folder path (a checkpoint or a training "
                            f"out_dir), got {checkpoint!r}")
    index = options.get("index", _OPTIONS["index"])
    if not isinstance(index, str) or index not in get_args(IndexKind):
        raise BadInputError(f"unknown RECIPE index {index!r}; choose one of: {', '.join(get_args(IndexKind))}")
    size = options.get("query_cache_size", _OPTIONS["query_cache_size"])
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadInputError(f"RECIPE option query_cache_size must be a whole number >= 0 (query keys "
                            f"remembered), got {size!r}")
    offset = options.get("sentinel_offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset):
        raise BadInputError(f"RECIPE option sentinel_offset must be a number (0: the paper's rule, higher: "
                            f"stricter retrieval), got {offset!r}")
    gate = options.get("gate", _OPTIONS["gate"])
    if not isinstance(gate, str) or gate not in _GATES:
        raise BadInputError(f"unknown RECIPE gate {gate!r}; choose one of: {', '.join(_GATES)}")
    ratio = options.get("cosine_ratio", _OPTIONS["cosine_ratio"])
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        raise BadInputError(f"RECIPE option cosine_ratio must be a number > 0 (0.9: a query is answered by an "
                            f"edit it is at least 0.9 times as close to as the edit's own prompt), got {ratio!r}")
    return {**_OPTIONS, **options, "sentinel_offset": float(offset), "cosine_ratio": float(ratio)}


def _device(model) -> torch.device:
    return model.get_input_embeddings().weight.device
