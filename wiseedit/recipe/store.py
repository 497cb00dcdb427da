"""The knowledge store: one row per edit (id, knowledge key, continuous prompt, own-prompt cosine), and
top-1 retrieval.

Rows keep insertion order; removing an edit drops its row. Buffers grow by doubling, so appending
edits one at a time costs amortised O(1) copies per edit.

Two metrics: ``"dot"``, the paper's scaled dot product ``q . k / sqrt(d_r)``, and ``"cosine"``, for
which the store keeps a unit-length copy of every key (written with the key, never saved) so that the
same search code ranks by cosine. Each row also carries the cosine of its edit's own prompt with its
key (NaN where unknown: rows saved before it was recorded), which the cosine gate of
:mod:`wiseedit.recipe.method` compares a query's cosine with.

Retrieval is exact by default: one matrix product of the queries with every key; a single query
over 8192 rows or more goes through a float16 copy of the keys whose answer is certified exact
(:mod:`wiseedit.recipe.scan`: 5.8 ms instead of 15.8 ms per query at 10^5 keys on 2 CPU cores).
``index="hnsw"`` uses a FAISS HNSW graph (``pip install faiss-cpu``): approximate top-1 with a latency
that stays flat as the store grows; the graph is extended on append and rebuilt from all keys after a
removal or replacement (about half a minute for 10^5 keys of width 512 on 2 cores).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence, get_args

import torch
import torch.nn.functional as F

from wiseedit.errors import BadInputError
from wiseedit.recipe.scan import HalfPrecisionScan

IndexKind = Literal["exact", "hnsw"]
Metric = Literal["dot", "cosine"]

#: The per-row tensors a store saves, beside the ids (``own_cosines`` is optional on load).
SAVED = ("keys", "prompts", "own_cosines")


class KnowledgeStore:
    """Keys (N, d_r), prompts (N, l, d_llm) and own-prompt cosines (N,) of N stored edits, by edit id."""

    def __init__(self, d_r: int, prompt_tokens: int, d_llm: int, device: torch.device | str = "cpu",
                 index: IndexKind = "exact", metric: Metric = "dot"):
        self.d_r, self.prompt_tokens, self.d_llm = d_r, prompt_tokens, d_llm
        for name, value, kind in (("index", index, IndexKind), ("metric", metric, Metric)):
            if value not in get_args(kind):
                raise BadInputError(f"unknown RECIPE {name} {value!r}; choose one of: {', '.join(get_args(kind))}")
        self.metric = metric
        self.ids: list[str] = []
        self._n = 0
        # per-row buffers of `capacity` rows, the first `_n` in use (float32)
        self._columns = {"keys": torch.empty(0, d_r, device=device),
                         "prompts": torch.empty(0, prompt_tokens, d_llm, device=device),
                         "own_cosines": torch.empty(0, device=device)}
        if metric == "cosine":
            self._columns["unit_keys"] = torch.empty(0, d_r, device=device)  # what cosine search scans
        self._rows: dict[str, int] = {}
        self._version = 0  # bumped on every change of the keys (the float16 copy follows it)
        self._scan = HalfPrecisionScan()
        self._index = _HnswIndex(d_r) if index == "hnsw" else None

    def __len__(self) -> int:
        return self._n

    @property
    def keys(self) -> torch.Tensor:
        return self._columns["keys"][: self._n]  # (N, d_r)

    @property
    def prompts(self) -> torch.Tensor:
        return self._columns["prompts"][: self._n]  # (N, l, d_llm)

    @property
    def own_cosines(self) -> torch.Tensor:
        """Per row, the cosine of its edit's own prompt (as a query) with its key: (N,); NaN: unknown."""
        return self._columns["own_cosines"][: self._n]

    # -- changing the rows -------------------------------------------------------------------------

    def add(self, ids: Sequence[str], keys: torch.Tensor, prompts: torch.Tensor,
            own_cosines: torch.Tensor | None = None) -> None:
        """Append edits `ids` with their keys (B, d_r), prompts (B, l, d_llm) and own-prompt cosines
        (B,) (None: unknown, NaN); ids must be new."""
        ids = list(ids)
        clash = [i for i in ids if i in self._rows]
        if clash or len(set(ids)) != len(ids):
            dup = clash[0] if clash else next(i for i in ids if ids.count(i) > 1)
            raise BadInputError(f"edit id {dup!r} is already in the RECIPE store; use replace() to change it")
        self._reserve(self._n + len(ids))
        self._write(slice(self._n, self._n + len(ids)), keys, prompts, own_cosines)
        for offset, edit_id in enumerate(ids):
            self._rows[edit_id] = self._n + offset
        self.ids.extend(ids)
        self._n += len(ids)
        self._version += 1

    def remove(self, ids: Sequence[str]) -> int:
        """Drop the rows of edits `ids` (unknown ids are refused); returns how many were dropped."""
        unknown = [i for i in ids if i not in self._rows]
        if unknown:
            raise BadInputError(f"edit id {unknown[0]!r} is not in the RECIPE store")
        drop = set(ids)
        keep = torch.tensor([i not in drop for i in self.ids], dtype=torch.bool, device=self.keys.device)
        kept = {name: column[: self._n][keep].clone() for name, column in self._columns.items()}
        self.ids = [i for i in self.ids if i not in drop]
        self._rows = {edit_id: row for row, edit_id in enumerate(self.ids)}
        self._n = len(self.ids)
        for name, rows in kept.items():
            self._columns[name][: self._n] = rows
        self._version += 1
        if self._index is not None:
            self._index.invalidate()
        return len(drop)

    def replace(self, edit_id: str, key: torch.Tensor, prompt: torch.Tensor,
                own_cosine: torch.Tensor | float | None = None) -> None:
        """Overwrite the key (d_r,), prompt (l, d_llm) and own-prompt cosine of stored edit `edit_id`,
        keeping its row."""
        if edit_id not in self._rows:
            raise BadInputError(f"edit id {edit_id!r} is not in the RECIPE store")
        row = self._rows[edit_id]
        own = None if own_cosine is None else torch.as_tensor(own_cosine).reshape(1)
        self._write(slice(row, row + 1), key[None], prompt[None], own)
        self._version += 1
        if self._index is not None:
            self._index.invalidate()

    def _write(self, rows: slice, keys: torch.Tensor, prompts: torch.Tensor,
               own_cosines: torch.Tensor | None) -> None:
        columns = self._columns
        columns["keys"][rows] = keys.to(columns["keys"])
        columns["prompts"][rows] = prompts.to(columns["prompts"])
        columns["own_cosines"][rows] = float("nan") if own_cosines is None else own_cosines.to(columns["keys"])
        if "unit_keys" in columns:
            columns["unit_keys"][rows] = F.normalize(columns["keys"][rows], dim=1)

    def _reserve(self, needed: int) -> None:
        capacity = self._columns["keys"].shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 16)
        for name, column in self._columns.items():
            grown = column.new_zeros(capacity, *column.shape[1:])
            grown[: self._n] = column[: self._n]
            self._columns[name] = grown

    # -- retrieval ---------------------------------------------------------------------------------

    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-1 row and its similarity for each query (Q, d_r): ((Q,), (Q,)). The similarity is
        ``q . k / sqrt(d_r)`` (metric ``"dot"``) or the cosine of q and k (``"cosine"``).

        An empty store answers row -1 with similarity -inf (never beats the sentinel).
        """
        q = queries.to(self._columns["keys"])
        if self._n == 0:
            return (torch.full((q.shape[0],), float("-inf"), device=q.device),
                    torch.full((q.shape[0],), -1, dtype=torch.long, device=q.device))
        if self.metric == "cosine":
            q, scanned = F.normalize(q, dim=1), self._columns["unit_keys"][: self._n]
        else:
            scanned = self.keys
        if self._index is not None:
            scores, rows = self._index.search(q, scanned)
        else:
            scores, rows = self._scan.top1(q, scanned, self._version)  # (Q,), (Q,)
        return (scores if self.metric == "cosine" else scores / math.sqrt(self.d_r)), rows

    # -- saving ------------------------------------------------------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        """The rows as saved: ``keys`` (N, d_r), ``prompts`` (N, l, d_llm) and ``own_cosines`` (N,),
        contiguous copies."""
        return {name: self._columns[name][: self._n].clone() for name in SAVED}

    def load(self, ids: Sequence[str], tensors: dict[str, torch.Tensor]) -> None:
        """Append saved rows (see :meth:`tensors`; a store saved without ``own_cosines`` loads them as
        unknown); shapes are checked against this store's."""
        keys, prompts, own = tensors["keys"], tensors["prompts"], tensors.get("own_cosines")
        n = len(ids)
        if (keys.shape != (n, self.d_r) or prompts.shape != (n, self.prompt_tokens, self.d_llm)
                or (own is not None and own.shape != (n,))):
            shapes = f"keys {tuple(keys.shape)}, prompts {tuple(prompts.shape)}" + (
                "" if own is None else f", own cosines {tuple(own.shape)}")
            raise BadInputError(f"the saved RECIPE store has {shapes}, which do not fit {n} edits of this checkpoint")
        self.add(ids, keys, prompts, own)


class _HnswIndex:
    """A FAISS HNSW inner-product graph mirroring the store's keys (approximate top-1)."""

    def __init__(self, d_r: int, neighbours: int = 32, ef_search: int = 128):
        try:
            import faiss
        except ImportError as error:
            raise BadInputError("the RECIPE 'hnsw' index needs FAISS: pip install faiss-cpu") from error
        self._faiss, self.d_r, self.neighbours, self.ef_search = faiss, d_r, neighbours, ef_search
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the graph; the next search rebuilds it from the keys."""
        self._graph = self._faiss.IndexHNSWFlat(self.d_r, self.neighbours, self._faiss.METRIC_INNER_PRODUCT)
        self._graph.hnsw.efSearch = self.ef_search

    def search(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graph.ntotal < keys.shape[0]:  # rows appended since the last search
            self._graph.add(keys[self._graph.ntotal:].detach().float().cpu().contiguous().numpy())
        scores, rows = self._graph.search(queries.detach().float().cpu().contiguous().numpy(), 1)
        return (torch.from_numpy(scores[:, 0]).to(queries.device),
                torch.from_numpy(rows[:, 0]).long().to(queries.device))
