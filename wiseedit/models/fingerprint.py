"""A short hash that identifies a model's base weights, so a delta is refused on a different base.

It must take seconds on a 7B model, so it hashes a fixed strided sample of each parameter rather than
every value: it tells checkpoints apart (any fine-tune or a different seed moves every sampled value),
it is not an integrity check against one flipped weight in a large tensor.

Values are cast to bfloat16 before hashing, so the same checkpoint loaded in float32 or bfloat16 gives
the same fingerprint (bf16 -> fp32 -> bf16 is exact, and fp32 -> bf16 rounds the same way whether the
loader or we do it). A float16 load of a non-float16 checkpoint may differ: fp16 rounds first.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

FINGERPRINT_VERSION = "wiseedit-base-fingerprint-v1"
SAMPLE_SIZE = 65536  # values hashed per parameter: all of them up to this size, else this many strided

# Config fields that fix the architecture's shapes; read through getattr so that GPT-2's n_embd etc.
# answer via the config's attribute_map. Absent fields hash as null.
_CONFIG_FIELDS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings")


def base_fingerprint(model: nn.Module) -> str:
    """``"sha256:<hex>"`` of the model's config essentials and a deterministic sample of every parameter.

    Works on models spread over devices or offloaded by accelerate (``device_map``): samples are moved
    to the CPU, and offloaded (meta) parameters are read back from their offload hook; a parameter whose
    values cannot be found raises rather than being skipped. Call it on the unedited base model.
    """
    digest = hashlib.sha256()
    digest.update(FINGERPRINT_VERSION.encode() + b"\0")
    digest.update(json.dumps(_config_essentials(model), sort_keys=True).encode() + b"\0")
    # named_parameters() yields a tied weight once, under its first name: the same for every load.
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        values = _strided_sample(_materialised(model, name, param))
        kind = "float" if values.is_floating_point() else str(values.dtype)
        digest.update(f"{name}\0{tuple(param.shape)}\0{kind}\0".encode())
        digest.update(_as_bytes(values))
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


def _as_bytes(values: torch.Tensor) -> bytes:
    if values.is_floating_point():
        # numpy has no bfloat16: reinterpret its bits as int16 to get the bytes.
        return values.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
    return values.contiguous().view(torch.uint8).numpy().tobytes()
