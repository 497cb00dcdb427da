"""The knowledge store: one row per edit (id, knowledge key, continuous prompt), and top-1 retrieval.

Rows keep insertion order; removing an edit drops its row. Buffers grow by doubling, so appending
edits one at a time costs amortised O(1) copies per edit.

Retrieval is exact by default: one matrix product of the queries with every key; a single query
over 8192 rows or more goes through a float16 copy of the keys whose answer is certified exact
(:mod:`wiseedit.recipe.scan`: 5.8 ms instead of 15.8 ms per query at 10^5 keys on 2 CPU cores).
``index="hnsw"`` uses a FAISS HNSW graph (``pip install faiss-cpu``): approximate top-1 with a latency
that stays flat as the store grows; the graph is extended on append and rebuilt from all keys after a
removal or replacement (about half a minute for 10^5 keys of width 512 on 2 cores).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from wiseedit.errors import BadInputError
from wiseedit.recipe.scan import HalfPrecisionScan

IndexKind = Literal["exact", "hnsw"]


class KnowledgeStore:
    """Keys (N, d_r) and prompts (N, l, d_llm) of N stored edits, addressed by edit id."""

    def __init__(self, d_r: int, prompt_tokens: int, d_llm: int, device: torch.device | str = "cpu",
                 index: IndexKind = "exact"):
        self.d_r, self.prompt_tokens, self.d_llm = d_r, prompt_tokens, d_llm
        self.ids: list[str] = []
        self._n = 0
        self._keys = torch.empty(0, d_r, device=device)  # (capacity, d_r) float32
        self._prompts = torch.empty(0, prompt_tokens, d_llm, device=device)  # (capacity, l, d_llm)
        self._rows: dict[str, int] = {}
        self._version = 0  # bumped on every change of the keys (the float16 copy follows it)
        self._scan = HalfPrecisionScan()
        if index not in ("exact", "hnsw"):
            raise BadInputError(f"unknown RECIPE index {index!r}; choose 'exact' or 'hnsw'")
        self._index = _HnswIndex(d_r) if index == "hnsw" else None

    def __len__(self) -> int:
        return self._n

    @property
    def keys(self) -> torch.Tensor:
        return self._keys[: self._n]  # (N, d_r)

    @property
    def prompts(self) -> torch.Tensor:
        return self._prompts[: self._n]  # (N, l, d_llm)

    # -- changing the rows -------------------------------------------------------------------------

    def add(self, ids: Sequence[str], keys: torch.Tensor, prompts: torch.Tensor) -> None:
        """Append edits `ids` with their keys (B, d_r) and prompts (B, l, d_llm); ids must be new."""
        ids = list(ids)
        clash = [i for i in ids if i in self._rows]
        if clash or len(set(ids)) != len(ids):
            dup = clash[0] if clash else next(i for i in ids if ids.count(i) > 1)
            raise BadInputError(f"edit id {dup!r} is already in the RECIPE store; use replace() to change it")
        self._reserve(self._n + len(ids))
        self._keys[self._n: self._n + len(ids)] = keys.to(self._keys)
        self._prompts[self._n: self._n + len(ids)] = prompts.to(self._prompts)
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
        keep = torch.tensor([i not in drop for i in self.ids], dtype=torch.bool, device=self._keys.device)
        keys, prompts = self.keys[keep].clone(), self.prompts[keep].clone()
        self.ids = [i for i in self.ids if i not in drop]
        self._rows = {edit_id: row for row, edit_id in enumerate(self.ids)}
        self._n = len(self.ids)
        self._keys[: self._n], self._prompts[: self._n] = keys, prompts
        self._version += 1
        if self._index is not None:
            self._index.invalidate()
        return len(drop)

    def replace(self, edit_id: str, key: torch.Tensor, prompt: torch.Tensor) -> None:
        """Overwrite the key (d_r,) and prompt (l, d_llm) of stored edit `edit_id`, keeping its row."""
        if edit_id not in self._rows:
            raise BadInputError(f"edit id {edit_id!r} is not in the RECIPE store")
        row = self._rows[edit_id]
        self._keys[row], self._prompts[row] = key.to(self._keys), prompt.to(self._prompts)
        self._version += 1
        if self._index is not None:
            self._index.invalidate()

    def _reserve(self, needed: int) -> None:
        capacity = self._keys.shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 16)
        keys = self._keys.new_zeros(capacity, self.d_r)
        prompts = self._prompts.new_zeros(capacity, self.prompt_tokens, self.d_llm)
        keys[: self._n], prompts[: self._n] = self.keys, self.prompts
        self._keys, self._prompts = keys, prompts

    # -- retrieval ---------------------------------------------------------------------------------

    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-1 row and its similarity ``q . k / sqrt(d_r)`` for each query (Q, d_r): ((Q,), (Q,)).

        An empty store answers row -1 with similarity -inf (never beats the sentinel).
        """
        q = queries.to(self._keys)
        if self._n == 0:
            return (torch.full((q.shape[0],), float("-inf"), device=q.device),
                    torch.full((q.shape[0],), -1, dtype=torch.long, device=q.device))
        if self._index is not None:
            scores, rows = self._index.search(q, self.keys)
        else:
            scores, rows = self._scan.top1(q, self.keys, self._version)  # (Q,), (Q,)
        return scores / math.sqrt(self.d_r), rows

    # -- saving ------------------------------------------------------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        """The rows as saved: ``keys`` (N, d_r) and ``prompts`` (N, l, d_llm), contiguous copies."""
        return {"keys": self.keys.clone(), "prompts": self.prompts.clone()}

    def load(self, ids: Sequence[str], tensors: dict[str, torch.Tensor]) -> None:
        """Append saved rows (see :meth:`tensors`); shapes are checked against this store's."""
        keys, prompts = tensors["keys"], tensors["prompts"]
        if keys.shape != (len(ids), self.d_r) or prompts.shape != (len(ids), self.prompt_tokens, self.d_llm):
            raise BadInputError(f"the saved RECIPE store has keys {tuple(keys.shape)} and prompts "
                                f"{tuple(prompts.shape)}, which do not fit {len(ids)} edits of this checkpoint")
        self.add(ids, keys, prompts)


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
