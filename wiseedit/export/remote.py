"""What the modeling file of a self-contained export runs under ``trust_remote_code=True``.

Kept inside wiseedit (the file written into the exported folder only delegates here), so the logic is
tested and versioned with the library rather than frozen into every export.
"""

from __future__ import annotations

from pathlib import Path

from wiseedit.artifacts import load_delta
from wiseedit.errors import BadInputError
from wiseedit.artifacts.exported import DELTA_SUBDIR, exported_delta
from wiseedit.models import LoadedModel, base_fingerprint, resolve_model
from wiseedit.models.loading import PLAIN_MODULES
from wiseedit.session import attach

# keyword arguments transformers' auto class adds for a remote class, not meant for the base's loader
_AUTO_ONLY = ("_from_auto", "adapter_kwargs", "code_revision")
# keyword arguments of from_pretrained that locate files on the Hub (for snapshot_download)
_HUB = ("revision", "cache_dir", "token", "local_files_only", "force_download")


def load_exported(pretrained_model_name_or_path, *model_args, **kwargs):
    """The base model of the exported folder (or Hub repository) with its delta attached.

    The base is loaded by transformers' own class for ``config.json``'s model_type, with the caller's
    ``from_pretrained`` arguments (dtype, device_map, ...); the delta is refused, as everywhere in
    wiseedit, if the weights are not the ones it was made on. Returns that model, edited, with the
    method as ``model.wiseedit``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _local_folder(pretrained_model_name_or_path, kwargs)
    delta_dir = exported_delta(folder)
    if delta_dir is None:
        raise BadInputError(f"{folder} is not a self-contained wiseedit export: {folder / DELTA_SUBDIR} or "
                            "its provenance file is missing")
    delta = load_delta(delta_dir)  # validated before the weights are loaded
    options = {k: v for k, v in kwargs.items() if k not in _AUTO_ONLY}
    options["trust_remote_code"] = False  # the native class for the model_type, not this file again
    options = {**PLAIN_MODULES, **options}  # the delta hooks plain modules (a caller may still ask otherwise)
    model = AutoModelForCausalLM.from_pretrained(folder, *model_args, **options)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # as wiseedit.models.load_base does
    base = LoadedModel(model=model, tokenizer=tokenizer, source=resolve_model(str(folder)),
                       fingerprint=base_fingerprint(model))
    attach(base, delta)
    return model


def _local_folder(name, kwargs: dict) -> Path:
    """`name` as a local folder: itself when it is one, else its Hub snapshot (weights included)."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder.resolve()
    from huggingface_hub import snapshot_download

    hub = {k: kwargs[k] for k in _HUB if kwargs.get(k) is not None}
    return Path(snapshot_download(str(name), **hub))
