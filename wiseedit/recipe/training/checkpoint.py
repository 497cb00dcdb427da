"""Writing RECIPE checkpoints during meta-training, and reading back the state that resuming needs.

:func:`save_checkpoint` writes ``<out_dir>/step-<8 digits>/`` whole through
:func:`~wiseedit.artifacts.atomic.atomic_directory` (temporary sibling, then rename): the files
inference reads (:mod:`wiseedit.recipe.checkpoint`) and ``training_state.safetensors``: Adam's
moments and step counts (``state.<i>.<name>``), the negatives bank (``bank.*``) and, where the weights
are a moving average (``ema_decay``), the trained weights (``trained.*``); its param groups as JSON in
the metadata. Only resuming reads it (:func:`load_training_state`).
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
from wiseedit.recipe.checkpoint import (
    CHECKPOINT_FORMAT,
    META_FILE,
    TOKENIZER_DIR,
    WEIGHTS_FILE,
    list_checkpoints,
    llm_hidden_size,
)
from wiseedit.recipe.networks import RecipeNetworks

TRAINING_FILE = "training_state.safetensors"


def base_description(llm) -> dict:
    """What a checkpoint records about the base LLM it was trained on."""
    return {"fingerprint": base_fingerprint(llm), "hidden_size": llm_hidden_size(llm),
            "name_or_path": getattr(llm.config, "_name_or_path", "") or ""}





def save_checkpoint(out_dir: Path, networks: RecipeNetworks, optimizer: torch.optim.Optimizer, step: int,
                    seed: int, base: dict, losses: dict | None = None, data: dict | None = None,
                    extra: dict[str, torch.Tensor] | None = None,
                    weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint ``step`` under `out_dir` atomically and prune old ones; returns its path.

    `data` describes the training data (name, size, hash; see :mod:`wiseedit.recipe.training.sources`), so that a
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
