"""Side memories and shard masks, and their compact saved form.

A side memory is stored as its *delta* from the main memory, ``W_side - W_main``, in the (out, in)
orientation of ``nn.Linear`` whatever the edited module is (GPT-2's Conv1D stores its weight (in, out);
the layer transposes). A shard trains only the entries of a random mask drawn from a saved seed, so
its delta is zero elsewhere and is saved as the masked values alone (``mask_ratio`` of a dense copy).
Its edits' texts are not saved with it: the delta's edit log holds them (:mod:`wiseedit.wise.saved`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

# Large odd constant to spread (seed, shard) pairs over the generator's seed space.
_SHARD_SEED_STRIDE = 1_000_003


def shard_mask_seed(seed: int, shard_index: int) -> int:
    """The mask seed of shard number `shard_index` of a method seeded with `seed`."""
    return (seed * _SHARD_SEED_STRIDE + shard_index) % (2**63)


def merge_seed(seed: int, shards_started: int) -> int:
    """The seed of DARE's drops in the merge made after `shards_started` shards: a stream of its own,
    since the same seed as a shard's mask would draw the same numbers and line the next shard's mask up
    with the entries the merge keeps."""
    return random.Random(f"{seed}:merge:{shards_started}").getrandbits(63)


def shard_mask(seed: int, shape: torch.Size | tuple, ratio: float, device) -> torch.Tensor:
    """The 0/1 (bool) mask of a shard: each entry is 1 with probability `ratio`.

    Drawn on the CPU with its own generator so the same seed gives the same mask on every device.
    """
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(tuple(shape), generator=gen) < ratio).to(device)


@dataclass
class Memory:
    """One side memory: a delta from the main memory and the routing threshold learned with it."""

    delta: torch.Tensor           # (out, in) float32, on the edited module's device
    min_score: float              # the lowest routing score of its edits' rows
    act_ratio: float              # threshold = act_ratio * min_score
    kind: str                     # "shard" (trained, masked) or "merged"
    mask_seed: int | None = None  # shards: the seed of their mask
    prompts: list[str] = field(default_factory=list)  # its edits' prompts, to re-threshold after a merge
    targets: list[str] = field(default_factory=list)  # shards: their edits' targets, to rehearse them
    # (neither is saved: the edit log holds them, and the state names the memory's run of it)
    keys: torch.Tensor | None = None  # (len(prompts), in) float32: the key router's per-edit keys

    @property
    def threshold(self) -> float:
        return self.act_ratio * self.min_score

    def to_saved(self, prefix: str, mask_ratio: float) -> tuple[dict, dict[str, torch.Tensor]]:
        """Metadata (JSON) and tensors of this memory, in the compact form described above (its edits
        are named by the caller, which knows their positions in the edit log)."""
        meta = {"kind": self.kind, "min_score": self.min_score, "act_ratio": self.act_ratio,
                "mask_seed": self.mask_seed}
        delta = self.delta.detach().float().cpu()
        keys = {} if self.keys is None else {f"{prefix}.keys": self.keys.detach().float().cpu().contiguous()}
        meta, tensors = self._saved_delta(meta, prefix, delta, mask_ratio)
        return meta, {**tensors, **keys}

    def _saved_delta(self, meta: dict, prefix: str, delta: torch.Tensor, mask_ratio: float):
        if self.kind == "shard":
            mask = shard_mask(self.mask_seed, delta.shape, mask_ratio, "cpu")
            return meta, {f"{prefix}.values": delta[mask].contiguous()}
        nonzero = delta.flatten().nonzero().flatten()
        if 2 * nonzero.numel() < delta.numel():  # sparse (int32 index + value) is smaller
            meta["storage"] = "sparse"
            return meta, {f"{prefix}.indices": nonzero.to(torch.int32).contiguous(),
                          f"{prefix}.values": delta.flatten()[nonzero].contiguous()}
        meta["storage"] = "dense"
        return meta, {f"{prefix}.values": delta.contiguous()}

    @classmethod
    def from_saved(cls, meta: dict, tensors: dict[str, torch.Tensor], prefix: str, shape: torch.Size,
                   mask_ratio: float, device, prompts: list[str], targets: list[str]) -> "Memory":
        """Inverse of :meth:`to_saved`, with the memory's edits' `prompts` and `targets` read back."""
        delta = torch.zeros(tuple(shape), dtype=torch.float32)
        values = tensors[f"{prefix}.values"].float()
        if meta["kind"] == "shard":
            delta[shard_mask(meta["mask_seed"], shape, mask_ratio, "cpu")] = values
        elif meta.get("storage") == "sparse":
            delta.view(-1)[tensors[f"{prefix}.indices"].long()] = values
        else:
            delta = values.reshape(shape).clone()
        keys = tensors.get(f"{prefix}.keys")  # None in deltas saved before the key router
        return cls(delta=delta.to(device), min_score=meta["min_score"], act_ratio=meta["act_ratio"],
                   kind=meta["kind"], mask_seed=meta["mask_seed"], prompts=list(prompts), targets=list(targets),
                   keys=None if keys is None else keys.float().to(device))
