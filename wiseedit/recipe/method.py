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
keys remembered per token sequence, so repeated prompts are encoded once), ``sentinel_offset`` (how far
the top-1 edit's similarity must exceed the sentinel's for its prompt to be used; default 0, the
paper's rule; higher is stricter: fewer unrelated prompts touched, fewer rephrasings recalled).
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

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.methods.base import EditingMethod, MethodState, ProgressFn
from wiseedit.recipe.checkpoint import META_FILE, WEIGHTS_FILE, load_networks, weights_sha256
from wiseedit.recipe.data import statement
from wiseedit.recipe.networks import RecipeNetworks
from wiseedit.recipe.prefix import PromptInjector
from wiseedit.recipe.store import IndexKind, KnowledgeStore

STATE_VERSION = 1
_OPTIONS = MappingProxyType({"checkpoint": None, "index": "exact", "query_cache_size": 4096,
                             "sentinel_offset": 0.0})


@dataclass(frozen=True)
class Retrieval:
    """What one query retrieves (:meth:`RecipeMethod.lookup`)."""

    id: str | None  # the top-1 stored edit (None: the store is empty)
    margin: float  # its similarity minus the sentinel's
    hit: bool  # whether its prompt is prefixed: margin > the sentinel_offset option (0 by default)


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
        self.store = KnowledgeStore(cfg.d_r, cfg.prompt_tokens, networks.d_llm, _device(model), options["index"])
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
        method = cls(model, tokenizer, networks, path, sha, _resolved_options(saved["options"]))
        method.store.load(saved["ids"], state.tensors)
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
            keys, prompts = self._encode(group)
            self.store.add([e.id for e in group], keys, prompts)
            if progress:
                progress(start + len(group), len(edits))

    def remove(self, ids: Sequence[str]) -> int:
        """Forget the edits `ids` (their rows leave the store); returns how many were removed."""
        return self.store.remove(ids)

    def replace(self, edit: EditRecord) -> None:
        """Re-teach the stored edit with ``edit.id`` as `edit` (its row keeps its place)."""
        keys, prompts = self._encode([edit])
        self.store.replace(edit.id, keys[0], prompts[0])

    @torch.no_grad()
    def _encode(self, edits: Sequence[EditRecord]) -> tuple[torch.Tensor, torch.Tensor]:
        keys, prompts = self.networks.knowledge([statement(e.prompt, e.target) for e in edits])
        return keys.float(), prompts.float()  # (B, d_r), (B, l, d_llm)

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
        margins, rows = self._top1([tokens[r] for r in present])  # (P,), (P,)
        chosen = torch.tensor(present, device=hit.device)
        hit[chosen] = margins > self.options["sentinel_offset"]  # strictly: a tie keeps the base model
        prompts[chosen] = self.store.prompts[rows.clamp(min=0)]
        return prompts, hit

    @torch.no_grad()
    def lookup(self, prompts: Sequence[str]) -> list[Retrieval]:
        """What each prompt, given alone, retrieves: its top-1 stored edit and that edit's margin over
        the Knowledge Sentinel (its prompt vectors are prefixed when the margin exceeds
        ``sentinel_offset``, 0 by default). For calibration and debugging: why an unrelated prompt
        changed, how close a neighbour came."""
        if not prompts:
            return []
        margins, rows = self._top1([tuple(self.tokenizer(p)["input_ids"]) for p in prompts])
        ids, offset = self.store.ids, self.options["sentinel_offset"]
        return [Retrieval(ids[r] if r >= 0 else None, m, m > offset) for m, r in zip(margins.tolist(), rows.tolist())]

    def _top1(self, token_rows: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per token sequence: the top-1 row's similarity minus the sentinel's, and the row (-1 and -inf
        when the store is empty): ((P,), (P,))."""
        queries = self._query_keys(token_rows)  # (P, d_r)
        scores, rows = self.store.search(queries)  # (P,), (P,)
        sentinel = queries @ self._sentinel / self.networks.config.d_r ** 0.5  # (P,)
        return scores - sentinel, rows

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
                "index": self.options["index"]}


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
    return {**_OPTIONS, **options, "sentinel_offset": float(offset)}


def _device(model) -> torch.device:
    return model.get_input_embeddings().weight.device
