"""Writing RECIPE checkpoints during meta-training, and reading back the state that resuming needs.

:func:`save_checkpoint` writes ``<out_dir>/step-<8 digits>/`` whole through
:func:`~wiseedit.artifacts.atomic.atomic_directory` (temporary sibling, then rename): the files
inference reads (:mod:`wiseedit.recipe.checkpoint`; the default encoder stored by the rows training
changed from the pretrained one, :mod:`wiseedit.recipe.reference`) and ``training_state.safetensors``:
Adam's moments and step counts (``state.<i>.<name>``; none for parameters whose learning rate is 0,
which Adam never moves), the negatives bank (``bank.*``) and, where the weights are a moving average
(``ema_decay``), the trained weights (``trained.*``); its param groups as JSON in the metadata. Its
tensors keep only the rows that differ from zero, or for ``trained.*`` from the averaged weights
(:mod:`wiseedit.recipe.rows`: the word embeddings of tokens training never read).

Only the newest checkpoint of a training folder keeps its training state: resuming reads no other, so
once a checkpoint is written whole, the older ones lose theirs and keep what editing needs (on the
world model with the default settings, 57 MB each and 228 MB for the newest; docs/recipe.md).
Checkpoints written before this still load and resume.
"""

from __future__ import annotations

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
from wiseedit.recipe import reference, rows
from wiseedit.recipe.checkpoint import (
    CHECKPOINT_FORMAT,
    META_FILE,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    WEIGHTS_METADATA,
    list_checkpoints,
    llm_hidden_size,
    read_weights,
)
from wiseedit.recipe.networks import RecipeNetworks
from wiseedit.recipe.training.averaging import TRAINED_PREFIX

TRAINING_FILE = "training_state.safetensors"


def base_description(llm) -> dict:
    """What a checkpoint records about the base LLM it was trained on."""
    return {"fingerprint": base_fingerprint(llm), "hidden_size": llm_hidden_size(llm),
            "name_or_path": getattr(llm.config, "_name_or_path", "") or ""}


def save_checkpoint(out_dir: Path, networks: RecipeNetworks, optimizer: torch.optim.Optimizer, step: int,
                    seed: int, base: dict, losses: dict | None = None, data: dict | None = None,
                    extra: dict[str, torch.Tensor] | None = None,
                    weights: dict[str, torch.Tensor] | None = None,
                    pretrained: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint ``step`` under `out_dir` atomically and prune old ones; returns its path.

    `data` describes the training data (name, size, hash; see :mod:`wiseedit.recipe.training.sources`), so that a
    resumed run can refuse other data. `extra`: more training-state tensors (e.g. the negatives bank),
    given back by :func:`load_training_state`. `weights`: the weights inference is to read, by the
    networks' parameter names (default: the networks' own; a run with ``ema_decay`` gives its average).
    `pretrained`: the default encoder's pretrained weights
    (:func:`~wiseedit.recipe.reference.pretrained_weights`) to store the encoder against; None: whole."""
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
        stored, against = reference.store(weights, pretrained)
        save_file(stored, tmp / WEIGHTS_FILE, metadata={
            WEIGHTS_METADATA: json.dumps({"format": CHECKPOINT_FORMAT} | against, sort_keys=True)})
        tensors, groups = _optimizer_tensors(optimizer)
        tensors.update(extra or {})
        tensors, compacted = rows.compact(tensors, _references(weights))
        save_file(tensors, tmp / TRAINING_FILE,
                  metadata={"param_groups": json.dumps(groups), rows.METADATA_KEY: compacted})
        networks.encoder.tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    found = list_checkpoints(out_dir)
    keep = networks.config.keep_checkpoints
    for old in found[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for old in found:  # resuming reads the newest one's only (written whole above)
        if old != final:
            (old / TRAINING_FILE).unlink(missing_ok=True)
    return final


def _references(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What each training-state tensor is stored against (:func:`rows.compact`): the trained weights
    against the weights the checkpoint offers (equal where training never moved them); the rest
    against zeros."""
    return {TRAINED_PREFIX + name: value for name, value in weights.items()}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Adam's state by ``state.<param index>.<slot>``, and its param groups. Parameters of a group at
    learning rate 0 (a frozen encoder) are left out: Adam never moves them, whatever their moments,
    and a resumed run starts their moments afresh with the same effect."""
    state = optimizer.state_dict()
    frozen = {i for group in state["param_groups"] if group["lr"] == 0 for i in group["params"]}
    tensors = {}
    for index, slots in state["state"].items():
        if index in frozen:
            continue
        for name, value in slots.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def training_tensors(path: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The training state of checkpoint `path`, whole (see the module docstring), and Adam's param
    groups; refuses a checkpoint that holds none (an older checkpoint of its run) in one sentence."""
    path = Path(path)
    file = path / TRAINING_FILE
    if not file.is_file():
        raise BadInputError(f"the checkpoint {path} holds no training state to resume from (only the newest "
                            "checkpoint of a run keeps it); pass --restart to start over")
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
    compacted = metadata.get(rows.METADATA_KEY)
    against_weights = any(info["reference"] for info in json.loads(compacted or "{}").values())
    weights = read_weights(path) if against_weights else {}
    tensors = rows.expand(load_file(str(file)), compacted, _references(weights))
    return tensors, json.loads(metadata["param_groups"])


def load_training_state(path: Path, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Restore `optimizer` (built over the same parameters) from checkpoint `path`; returns the other
    training-state tensors saved with it (``extra`` of :func:`save_checkpoint`)."""
    file = Path(path) / TRAINING_FILE
    tensors, groups = training_tensors(path)
    state: dict[int, dict] = {}
    extra = {}
    for key, value in tensors.items():
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
