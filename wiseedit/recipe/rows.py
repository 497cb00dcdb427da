"""Storing tensors by the rows that carry information, bit for bit.

Much of what a RECIPE checkpoint holds is the size of the networks, and a large part of the networks is
the encoder's word-embedding matrix (all-MiniLM: 30522 x 384 of 23M parameters), whose rows for tokens
that training never read get no gradient: their Adam moments stay exactly zero, their trained weights
equal the averaged ones, and the averaged ones equal the pretrained encoder's. :func:`compact` keeps
only the rows of a tensor (its first dimension; the elements of a vector) that differ from a reference
(zeros, or a tensor available anyway), with their indices; :func:`expand` rebuilds the whole tensor.
Rows are compared by their bits, so -0.0, NaN and every value come back exactly as they were.
"""

from __future__ import annotations

import json

import torch

#: Suffix of the tensor holding a compacted tensor's kept row indices (int64).
ROWS_SUFFIX = ":rows"
#: Metadata key of the compacted tensors: JSON {name: {"shape": [...], "reference": bool}}.
METADATA_KEY = "compact_rows"

_SAME_SIZE_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_INDEX_BYTES = 8  # one int64 row index


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's values as integers of the same width (floats by their bit pattern)."""
    if tensor.is_floating_point():
        return tensor.view(_SAME_SIZE_INT[tensor.element_size()])
    return tensor


def compact(tensors: dict[str, torch.Tensor],
            references: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """`tensors` with each tensor of 1+ dimensions reduced to its rows that differ from its reference
    (``references[name]`` where given, else zeros), and the metadata value that :func:`expand` needs. A
    tensor is kept whole where the rows dropped would weigh less than the indices of the rows kept."""
    out, compacted = {}, {}
    for name, tensor in tensors.items():
        reference = references.get(name)
        if tensor.dim() < 1 or (reference is not None and (reference.shape != tensor.shape
                                                           or reference.dtype != tensor.dtype)):
            out[name] = tensor
            continue
        against = _bits(reference) if reference is not None else torch.zeros((), dtype=_bits(tensor).dtype)
        differ = (_bits(tensor) != against).reshape(tensor.shape[0], -1).any(1)  # (rows,)
        kept = int(differ.sum())
        row_bytes = tensor[0].numel() * tensor.element_size() if tensor.shape[0] else 0
        if (tensor.shape[0] - kept) * row_bytes <= kept * _INDEX_BYTES:
            out[name] = tensor
            continue
        rows = differ.nonzero().flatten()
        out[name] = tensor[rows].contiguous()
        out[name + ROWS_SUFFIX] = rows.to(torch.int64)
        compacted[name] = {"shape": list(tensor.shape), "reference": reference is not None}
    return out, json.dumps(compacted, sort_keys=True)


def expand(tensors: dict[str, torch.Tensor], metadata: str | None,
           references: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The whole tensors of a :func:`compact` result (`metadata` None: a file written before
    compaction, returned as it is)."""
    out = dict(tensors)
    for name, info in json.loads(metadata or "{}").items():
        rows = out.pop(name + ROWS_SUFFIX)
        kept = out[name]
        full = (references[name].clone() if info["reference"]
                else torch.zeros(info["shape"], dtype=kept.dtype))
        full[rows] = kept
        out[name] = full
    return out
