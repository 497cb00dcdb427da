"""A short hash that identifies a model's base weights, so a delta is refused on a different base.

It must take seconds on a 7B model, so it hashes a fixed strided sample of each parameter rather than
every value: it tells checkpoints apart, it is not an integrity check against one changed weight.

What is hashed of each sampled value is its **sign bit**, because that is the only part of a value
that every load of one checkpoint agrees on. A float32 checkpoint loaded in bfloat16 or float16 holds
each value rounded to that format, and no function of the value (however coarse a rounding) gives one
answer for ``x``, ``bf16(x)`` and ``fp16(x)``: every grid has boundaries, and some of 65,536 sampled
values always sit close enough to one to fall on either side (v1 hashed the values rounded to
bfloat16: fp32 and bf16 loads agreed, fp16 loads did not). IEEE rounding keeps the sign bit exactly,
underflow to ±0 and overflow to ±inf included. A different checkpoint still differs: another seed
flips half of the sampled signs, and any fine-tune flips the signs of the sampled values it moves
across zero (noise of 1e-4 of each weight matrix's spread flips 39 of a tiny Llama's 437,056
sampled signs, 1e-3 flips 184; tests/test_models.py checks that such a change is told apart). Deltas and RECIPE checkpoints recorded with v1 are still
accepted: :func:`same_base` computes v1 when v2 does not match.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn

FINGERPRINT_VERSION = "wiseedit-base-fingerprint-v2"
LEGACY_VERSION = "wiseedit-base-fingerprint-v1"
SAMPLE_SIZE = 65536  # values hashed per parameter: all of them up to this size, else this many strided

# Config fields that fix the architecture's shapes; read through getattr so that GPT-2's n_embd etc.
# answer via the config's attribute_map. Absent fields hash as null.
_CONFIG_FIELDS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings")


def base_fingerprint(model: nn.Module) -> str:
    """``"sha256:<hex>"`` of the model's config essentials and the sign bits of a deterministic sample
    of every parameter: the same for float32, bfloat16 and float16 loads of one checkpoint.

    Works on models spread over devices or offloaded by accelerate (``device_map``): samples are moved
    to the CPU, and offloaded (meta) parameters are read back from their offload hook; a parameter whose
    values cannot be found raises rather than being skipped. Call it on the unedited base model.
    """
    return _hash(model, FINGERPRINT_VERSION, _sign_bytes)


def legacy_fingerprint(model: nn.Module) -> str:
    """The v1 fingerprint (values rounded to bfloat16), which deltas and RECIPE checkpoints made
    before v2 record: float16 loads of a float32 checkpoint gave another one."""
    return _hash(model, LEGACY_VERSION, _as_bytes)


def same_base(recorded: str, model: nn.Module, fingerprint: str | None = None) -> bool:
    """Whether `recorded` (a delta's or checkpoint's ``base_fingerprint``) names the unedited `model`,
    whose :func:`base_fingerprint` is `fingerprint` when already known. A v1 record is checked against
    :func:`legacy_fingerprint` (computed only when v2 does not match)."""
    current = fingerprint if fingerprint is not None else base_fingerprint(model)
    return recorded == current or recorded == legacy_fingerprint(model)


def _hash(model: nn.Module, version: str, to_bytes) -> str:
    digest = hashlib.sha256()
    digest.update(version.encode() + b"\0")
    digest.update(json.dumps(_config_essentials(model), sort_keys=True).encode() + b"\0")
    # named_parameters() yields a tied weight once, under its first name: the same for every load.
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        values = _strided_sample(_materialised(model, name, param))
        kind = "float" if values.is_floating_point() else str(values.dtype)
        digest.update(f"{name}\0{tuple(param.shape)}\0{kind}\0".encode())
        digest.update(to_bytes(values))
    return "sha256:" + digest.hexdigest()


def _config_essentials(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    essentials = {field: getattr(config, field, None) for field in _CONFIG_FIELDS}
    # Keep only JSON scalars: some configs hold objects in these slots (e.g. nested sub-configs).
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else repr(v) for k, v in essentials.items()}


def _materialised(model: nn.Module, name: str, param: torch.Tensor) -> torch.Tensor:
    """The parameter's values, fetched from accelerate's offload (disk/CPU) when it sits on 'meta'."""
    if param.device.type != "meta":
        return param.detach()
    from transformers.integrations.accelerate import load_offloaded_parameter

    try:
        return load_offloaded_parameter(model, name).detach()
    except (ValueError, KeyError) as error:
        raise RuntimeError(f"parameter {name} is on the meta device and no offload hook holds its values, "
                           "so the base model cannot be fingerprinted") from error


def _strided_sample(values: torch.Tensor) -> torch.Tensor:
    """All values of a small tensor, else SAMPLE_SIZE values at an even stride over the flattened tensor.

    The gather runs on the tensor's own device; only the sample travels to the CPU.
    """
    flat = values.reshape(-1)
    if flat.numel() > SAMPLE_SIZE:
        flat = flat[:: flat.numel() // SAMPLE_SIZE][:SAMPLE_SIZE]
    return flat.to("cpu")


def _sign_bytes(values: torch.Tensor) -> bytes:
    """Floats: their sign bits, 8 to a byte (exact under every cast between float formats); integer
    tensors (rare: buffers are not parameters) keep all their bytes."""
    if values.is_floating_point():
        return np.packbits(torch.signbit(values).numpy()).tobytes()
    return values.contiguous().view(torch.uint8).numpy().tobytes()


def _as_bytes(values: torch.Tensor) -> bytes:
    if values.is_floating_point():
        # numpy has no bfloat16: reinterpret its bits as int16 to get the bytes.
        return values.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
    return values.contiguous().view(torch.uint8).numpy().tobytes()
