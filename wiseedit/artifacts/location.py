"""Where outputs go: a delta's default folder when the user gives no ``--out``, and whether a chosen
location can be written at all (checked before any model is loaded)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from wiseedit.errors import BadInputError

SUFFIX = ".wiseedit"


def sanitise_name(name: str) -> str:
    """A model name as one safe folder name: ``org/model`` -> ``org--model`` (as the Hugging Face cache
    does), other characters outside ``[A-Za-z0-9._-]`` -> ``_``, no leading dots."""
    name = name.strip().strip("/\\").replace("/", "--").replace("\\", "--")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "model"


def _in_hub_cache(folder: Path) -> bool:
    """True for ``.../models--org--name/snapshots/<commit>``: a cache folder, not the user's own."""
    return folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--")


def default_delta_dir(base_path: Path | None, builtin: bool, base_name: str, cwd: Path) -> Path:
    """The default delta directory for a base model.

    Rule: when the base is a local checkpoint folder (`base_path`, not a `builtin` model shipped with
    wiseedit, not a Hugging Face cache snapshot) whose parent folder is writable, the delta is its
    sibling ``<base folder name>.wiseedit`` (``/models/llama`` -> ``/models/llama.wiseedit``), so it
    travels with the checkpoint. Otherwise (a hub id, a builtin model, a read-only location) it is
    ``cwd / "<sanitised name>.wiseedit"``, where the name is the local folder's name if there is one,
    else `base_name` made filesystem-safe (``meta-llama/Llama-2-7b-hf`` ->
    ``meta-llama--Llama-2-7b-hf.wiseedit``).
    """
    cwd = Path(cwd)
    if base_path is not None and not builtin:
        folder = Path(base_path).expanduser().absolute()
        if folder.is_dir() and not _in_hub_cache(folder):
            if os.access(folder.parent, os.W_OK | os.X_OK):
                return folder.parent / (folder.name + SUFFIX)
            return cwd / (sanitise_name(folder.name) + SUFFIX)
    return cwd / (sanitise_name(base_name) + SUFFIX)


def check_writable(path: str | Path, option: str = "out", hint: str = "") -> None:
    """Refuse (BadInputError, one sentence) an output location that cannot be created or written: the
    deepest existing folder on the way to `path` (its parent, for an existing `path`, which outputs
    replace through a sibling) must be a writable directory, and an existing directory `path` writable
    too. Commands call it before loading a model, so a bad `option` costs nothing; a full disk or a
    filesystem that refuses later still fails at the write, leaving what was saved untouched.

    `option` names the parameter `path` was given as (``output_path``); the command line's message names
    its flag (``--output-path``). A description with a space ("the delta") reads the same on both. `hint`
    ends the sentence, ``{out}`` in it naming the output parameter (``out``; on the command line ``--out DIR``)."""
    path = Path(path).expanduser().absolute()
    flag = option if " " in option else "--" + option.replace("_", "-")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        problem = f"{path}: {folder} is a file, not a folder"
        raise BadInputError(f"{option} {problem}{hint.format(out='out')}",
                            cli=f"{flag} {problem}{hint.format(out='--out DIR')}")
    for place in (folder, path) if path.is_dir() else (folder,):
        if not os.access(place, os.W_OK | os.X_OK):
            problem = f"{path}: {place} is not writable"
            raise BadInputError(f"{option} {problem}{hint.format(out='out')}",
                            cli=f"{flag} {problem}{hint.format(out='--out DIR')}")
