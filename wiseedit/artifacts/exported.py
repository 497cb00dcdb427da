"""Recognising an exported folder: the names of the files ``wiseedit export`` writes there.

Part of the artifact format (:mod:`wiseedit.export` writes these files, :mod:`wiseedit.session` reads
them); kept free of torch and transformers so that loading can ask cheaply whether a model folder
carries its own delta.
"""

from __future__ import annotations

from pathlib import Path

#: Where a self-contained export keeps its delta, relative to the exported folder.
DELTA_SUBDIR = "wiseedit_delta"
#: The provenance record of every export (both forms).
PROVENANCE_FILE = "wiseedit_export.json"
#: The modeling file a self-contained export ships for ``trust_remote_code=True`` loading.
MODELING_FILE = "modeling_wiseedit.py"
#: The class ``auto_map`` points ``AutoModelForCausalLM`` at, in :data:`MODELING_FILE`.
MODELING_CLASS = "WiseeditForCausalLM"
#: The edit log of a merged export (a self-contained one keeps it inside :data:`DELTA_SUBDIR`).
MERGED_EDITS_FILE = "edits.jsonl"


def exported_delta(path: str | Path | None) -> Path | None:
    """The delta directory shipped inside a self-contained export at `path`, or None.

    None for anything else: a plain model folder, a merged export (its edits are in the weights), a
    name that is not a local folder (an alias, a hub id). Only presence is checked here; the delta is
    validated when it is loaded.
    """
    if path is None:
        return None
    folder = Path(path).expanduser()
    delta = folder / DELTA_SUBDIR
    if (folder / PROVENANCE_FILE).is_file() and (delta / "wiseedit_config.json").is_file():
        return delta
    return None
