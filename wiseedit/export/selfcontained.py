"""The self-contained form: base weights, tokenizer, the delta as ``wiseedit_delta/``, and a modeling file.

Loading paths for such a folder:

- ``wiseedit.load(DIR)``: wiseedit finds ``wiseedit_delta/`` (:func:`wiseedit.artifacts.exported.exported_delta`)
  and attaches it;
- ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``: ``config.json``'s ``auto_map``
  sends transformers to ``modeling_wiseedit.py``, which loads the base with transformers' own class and
  attaches the delta through wiseedit (which must be installed);
- ``AutoModelForCausalLM.from_pretrained(DIR)`` without ``trust_remote_code``: transformers prefers its
  own class for a model_type it knows and ignores ``auto_map``, so this gives the *unedited* base.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Callable

from wiseedit.artifacts import CONFIG_FILE, EDITS_FILE, TENSORS_FILE, Delta, atomic_write_text, load_delta
from wiseedit.errors import WiseEditError
from wiseedit.artifacts.exported import DELTA_SUBDIR, MODELING_CLASS, MODELING_FILE

AUTO_CLASS = "AutoModelForCausalLM"
_CLASS_REF = f"{Path(MODELING_FILE).stem}.{MODELING_CLASS}"  # "modeling_wiseedit.WiseeditForCausalLM"


def copy_delta(delta: Delta, folder: Path) -> Path:
    """Copy the three files of `delta` verbatim into ``folder/wiseedit_delta`` and check the copy reads
    back as the delta that was loaded (a delta rewritten meanwhile is refused, not half-exported)."""
    target = folder / DELTA_SUBDIR
    target.mkdir()
    for name in (CONFIG_FILE, TENSORS_FILE, EDITS_FILE):
        shutil.copyfile(Path(delta.path) / name, target / name)
    copy = load_delta(target)
    if copy.config != delta.config or copy.edits_text != delta.edits_text:
        raise WiseEditError(f"delta {delta.path} changed while it was being exported; run the export again")
    return target


def modeling_source() -> str:
    """The text of the modeling file written into the folder (:mod:`wiseedit.export.modeling_template`)."""
    return resources.files("wiseedit.export").joinpath("modeling_template.py").read_text(encoding="utf-8")


def add_remote_code(folder: Path) -> None:
    """Write ``modeling_wiseedit.py`` and point ``config.json``'s ``auto_map`` at its class."""
    atomic_write_text(folder / MODELING_FILE, modeling_source())
    _edit_auto_map(folder, lambda auto_map: auto_map | {AUTO_CLASS: _CLASS_REF})


def remove_remote_code(folder: Path) -> None:
    """Drop an ``auto_map`` entry pointing at our modeling file (a base that was itself a self-contained
    export keeps it in its config), for a folder that does not ship the file."""
    _edit_auto_map(folder, lambda auto_map: {k: v for k, v in auto_map.items() if v != _CLASS_REF})


def _edit_auto_map(folder: Path, change: Callable[[dict], dict]) -> None:
    """Rewrite ``config.json`` with ``auto_map`` replaced by ``change(auto_map)`` (dropped when empty)."""
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    before = dict(config.get("auto_map") or {})
    after = change(before)
    if after == before:
        return
    if after:
        config["auto_map"] = after
    else:
        config.pop("auto_map", None)
    atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")
