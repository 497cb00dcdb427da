"""GRACE's codebook: keys, values, radii and labels, with the paper's update rule and nearest-key routing.

Keys and values live on the wrapped module's device in its dtype; radii are float32 (a radius rounded to
bf16 could make two split entries overlap again); labels are the target token ids, padded with -1.
"""

from __future__ import annotations

import torch

PAD_LABEL = -1


class GraceCodebook:
    """N entries: keys (N, d_in), values (N, d_out), radii (N,), labels (N, L_max)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, radii: torch.Tensor, labels: torch.Tensor):
        self.keys, self.values, self.radii, self.labels = keys, values, radii, labels

    @classmethod
    def empty(cls, d_in: int, d_out: int, device, dtype) -> "GraceCodebook":
        """A codebook with no entries for a module mapping d_in features to d_out."""
        return cls(
            torch.empty(0, d_in, device=device, dtype=dtype),
            torch.empty(0, d_out, device=device, dtype=dtype),
            torch.empty(0, device=device, dtype=torch.float32),
            torch.empty(0, 1, device=device, dtype=torch.long),
        )

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], device, dtype) -> "GraceCodebook":
        """The inverse of :meth:`tensors`, moved onto the module's device and dtype."""
        return cls(
            tensors["keys"].to(device=device, dtype=dtype),
            tensors["values"].to(device=device, dtype=dtype),
            tensors["radii"].to(device=device, dtype=torch.float32),
            tensors["labels"].to(device=device, dtype=torch.long),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything the codebook holds, as named tensors (what a delta's safetensors stores)."""
        return {"keys": self.keys, "values": self.values, "radii": self.radii, "labels": self.labels}

    def __len__(self) -> int:
        return self.keys.shape[0]

    def distances(self, query: torch.Tensor) -> torch.Tensor:
        """(B, N) Euclidean distances from query (B, d_in) to every key, in float32."""
        # the direct formula, not the matmul one: a key must be at distance exactly 0 from itself
        return torch.cdist(query.float()[None], self.keys.float()[None],
                           compute_mode="donot_use_mm_for_euclid_dist")[0]

    @torch.no_grad()
    def route(self, query: torch.Tensor) -> torch.Tensor:
        """(B,) the nearest entry of each query (B, d_in) if within its radius, else -1."""
        if len(self) == 0:
            return torch.full((query.shape[0],), -1, device=query.device, dtype=torch.long)
        dist, nearest = self.distances(query).min(dim=-1)  # (B,), (B,)
        return torch.where(dist <= self.radii[nearest], nearest, -1)

    @torch.no_grad()
    def insert(self, key: torch.Tensor, value: torch.Tensor, radius: float, label: torch.Tensor) -> int:
        """Make room for a new edit (key (d_in,), initial value (d_out,), initial radius, label (L,))
        and return the index of the entry whose value must now produce `label`.

        The paper's rule, with d the distance to the nearest key k_j of radius r_j:
        - d > radius + r_j: the balls do not touch: add a new entry;
        - same label: expand r_j to d if needed (coverage), and train entry j;
        - different label: split: add the new entry and shrink both radii to at most d / 2.
        A new label for the very same key (d = 0: the same prompt edited again) replaces entry j.
        """
        if len(self) == 0:
            return self._add(key, value, radius, label)
        dist, j = self.distances(key[None])[0].min(dim=0)
        d, j = dist.item(), int(j)
        if d > radius + self.radii[j].item():
            return self._add(key, value, radius, label)
        if self._same_label(j, label):
            self.radii[j] = max(self.radii[j].item(), d)
            return j
        if d == 0.0:
            self.labels = _set_label(self.labels, j, label)
            self.values[j] = value
            return j
        self.radii[j] = min(self.radii[j].item(), d / 2)
        return self._add(key, value, min(radius, d / 2), label)

    def set_value(self, index: int, value: torch.Tensor) -> None:
        """Store a trained value for entry `index` (cast to the codebook's dtype)."""
        self.values[index] = value.to(self.values.dtype)

    def _same_label(self, index: int, label: torch.Tensor) -> bool:
        row = self.labels[index]
        return torch.equal(row[row != PAD_LABEL], label.to(row.device))

    def _add(self, key: torch.Tensor, value: torch.Tensor, radius: float, label: torch.Tensor) -> int:
        self.keys = torch.cat([self.keys, key[None].to(self.keys.dtype)])
        self.values = torch.cat([self.values, value[None].to(self.values.dtype)])
        self.radii = torch.cat([self.radii, self.radii.new_tensor([radius])])
        width = max(self.labels.shape[1], label.numel())
        labels = self.labels.new_full((len(self), width), PAD_LABEL)
        labels[:-1, : self.labels.shape[1]] = self.labels
        self.labels = _set_label(labels, len(self) - 1, label)
        return len(self) - 1


def _set_label(labels: torch.Tensor, index: int, label: torch.Tensor) -> torch.Tensor:
    """`labels` (N, L) with row `index` set to `label` padded with -1 (widened if needed)."""
    if label.numel() > labels.shape[1]:
        wider = labels.new_full((labels.shape[0], label.numel()), PAD_LABEL)
        wider[:, : labels.shape[1]] = labels
        labels = wider
    labels[index] = PAD_LABEL
    labels[index, : label.numel()] = label.to(labels.device)
    return labels
