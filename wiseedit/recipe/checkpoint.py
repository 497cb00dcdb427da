"""RECIPE checkpoints: the meta-trained networks of one base LLM, and the state to resume training.

A checkpoint is a directory ``<out_dir>/step-<8 digits>/``, written whole through
:func:`~wiseedit.artifacts.atomic.atomic_directory` (temporary sibling, then rename):

- ``recipe_checkpoint.json``: format, :class:`RecipeConfig`, the encoder's Hugging Face config, the base
  LLM (fingerprint, hidden size, name), step, seed, the training data (name, size, sha256), library
  versions, the last losses;
- ``recipe.safetensors``: the weights of :class:`RecipeNetworks` (encoder, MLP_K, MLP_Q, MLP_P,
  sentinel) — all inference needs, with the tokenizer;
- ``encoder_tokenizer/``: the encoder's tokenizer files;
- ``training_state.safetensors``: Adam's moments and step counts (``state.<i>.<name>``), the negatives
  bank (``bank.*``) and, where the weights above are a moving average (``ema_decay``), the trained
  weights (``trained.*``); its param groups as JSON in the metadata. Only resuming reads it.

The checkpoint is self-contained (no need for the original encoder folder) and no pickle is involved.
It is refused on another base LLM (hidden size or :func:`base_fingerprint` differ).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wiseedit.artifacts.atomic import atomic_directory
from wiseedit.errors import BadInputError
from wiseedit.models.fingerprint import base_fingerprint
from wiseedit.recipe.config import RecipeConfig
from wiseedit.recipe.edit_config import RecipeEditConfig
from wiseedit.recipe.encoder import SentenceEncoder
from wiseedit.recipe.networks import RecipeNetworks

CHECKPOINT_FORMAT = 1
META_FILE = "recipe_checkpoint.json"
WEIGHTS_FILE = "recipe.safetensors"
TRAINING_FILE = "training_state.safetensors"
TOKENIZER_DIR = "encoder_tokenizer"


def llm_hidden_size(llm) -> int:
    """The width of the LLM's input embeddings: the size of RECIPE's prompt vectors."""
    return int(llm.get_input_embeddings().weight.shape[1])


def base_description(llm) -> dict:
    """What a checkpoint records about the base LLM it was trained on."""
    return {"fingerprint": base_fingerprint(llm), "hidden_size": llm_hidden_size(llm),
            "name_or_path": getattr(llm.config, "_name_or_path", "") or ""}


def check_base(meta: dict, llm, where: Path) -> None:
    """Refuse (BadInputError) a checkpoint `meta` trained on a base other than `llm`."""
    base, hidden = meta["base"], llm_hidden_size(llm)
    if base["hidden_size"] != hidden:
        raise BadInputError(f"the RECIPE checkpoint {where} was trained for an LLM of hidden size "
                            f"{base['hidden_size']}, but this model's is {hidden}")
    found = base_fingerprint(llm)
    if base["fingerprint"] != found:
        raise BadInputError(f"the RECIPE checkpoint {where} was meta-trained on another base model "
                            f"({base['fingerprint'][:19]}..., this one is {found[:19]}...); "
                            "meta-train one for this model")


# -- writing ---------------------------------------------------------------------------------------

def save_checkpoint(out_dir: Path, networks: RecipeNetworks, optimizer: torch.optim.Optimizer, step: int,
                    seed: int, base: dict, losses: dict | None = None, data: dict | None = None,
                    extra: dict[str, torch.Tensor] | None = None,
                    weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint ``step`` under `out_dir` atomically and prune old ones; returns its path.

    `data` describes the training data (name, size, hash; see :mod:`wiseedit.recipe.sources`), so that a
    resumed run can refuse other data. `extra`: more training-state tensors (e.g. the negatives bank),
    given back by :func:`load_training_state`. `weights`: the weights inference is to read, by the
    networks' parameter names (default: the networks' own; a run with ``ema_decay`` gives its average)."""
    out_dir = Path(out_dir)
    final = out_dir / f"step-{step:08d}"
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": networks.config.to_dict(),
        "encoder_config": networks.encoder.model.config.to_dict(),
        "base": base,
        "step": step,
        "seed": seed,
        "losses": losses or {},
        "data": data or {},
        "versions": {p: _version(p) for p in ("wiseedit", "torch", "transformers")},
    }
    with atomic_directory(final, overwrite=True) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in (weights or networks.state_dict()).items()}
        save_file(weights, tmp / WEIGHTS_FILE, metadata={"format": f"recipe-checkpoint-{CHECKPOINT_FORMAT}"})
        tensors, groups = _optimizer_tensors(optimizer)
        tensors.update(extra or {})
        save_file(tensors, tmp / TRAINING_FILE, metadata={"param_groups": json.dumps(groups)})
        networks.encoder.tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    keep = networks.config.keep_checkpoints
    if keep > 0:
        for old in list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


# -- bundling into an export -------------------------------------------------------------------------

#: Where a self-contained export keeps a RECIPE delta's checkpoint, relative to the delta directory.
BUNDLED_DIR = "recipe_checkpoint"


def bundle_checkpoint(delta_dir: Path, config_file: str, origin: Path) -> Path:
    """Copy the checkpoint that the RECIPE delta in `delta_dir` (a copy of the delta at `origin`) names
    into ``delta_dir/recipe_checkpoint`` (the files inference reads: weights, metadata, encoder
    tokenizer; not the optimiser state) and point the delta's ``method_settings.checkpoint`` at it
    by relative path, so the folder can move. A relative path names a checkpoint inside `origin` (a
    delta taken from an earlier export). The copy must hash like the original (``checkpoint_sha256``)."""
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
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path} is a RECIPE checkpoint of format {meta.get('format')}, "
                            f"this wiseedit reads format {CHECKPOINT_FORMAT}")
    return meta


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
    networks.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    return networks.to(device).eval(), meta, path


def load_training_state(path: Path, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Restore `optimizer` (built over the same parameters) from checkpoint `path`; returns the other
    training-state tensors saved with it (``extra`` of :func:`save_checkpoint`)."""
    file = Path(path) / TRAINING_FILE
    with safe_open(str(file), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    state: dict[int, dict] = {}
    extra = {}
    for key, value in load_file(str(file)).items():
        if not key.startswith("state."):
            extra[key] = value
            continue
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except ValueError as error:
        # torch refuses groups that differ in number or size from the optimizer's: Adam has one group per
        # learning rate (two with encoder_lr), so the recorded settings are not the ones the state was
        # saved under (an edited or foreign checkpoint)
        raise BadInputError(f"the optimizer state in {file} does not fit the settings its checkpoint records "
                            f"({len(groups)} parameter group(s) saved, {len(optimizer.param_groups)} expected "
                            "from them, e.g. encoder_lr); pass --restart to start over, or resume from an "
                            "unaltered checkpoint") from error
    return extra
