"""Turn a model name from the user into a local folder to load from, without touching the network.

A name is, in this order: an existing local folder, an alias (``llama2``, ``world``, ...), or a
Hugging Face id that is already in the local cache. ``id@revision`` pins a cached revision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wiseedit.errors import BadInputError
from wiseedit.models.aliases import builtin_path, hub_id_for, known_aliases

# Files that hold weights: safetensors first (no pickle); PyTorch .bin is accepted because
# transformers 5 loads it with weights_only=True.
_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")

_HOW_TO_PROVIDE = ("download it where you have a network and pass its folder, "
                   "or point HF_HOME at a cache that has it")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: what the user typed and the local folder it resolved to."""

    name: str  # as given by the user
    path: Path  # local folder with config.json and weights, passed to from_pretrained
    hub_id: str | None = None  # the Hugging Face id, when known (alias, cache, or a cache snapshot folder)
    builtin: bool = False  # shipped inside wiseedit (e.g. the world model)
    revision: str | None = None  # the commit of a cached snapshot, when known


def resolve_model(name: str, *, cache_dir: str | Path | None = None) -> ModelSource:
    """Resolve `name` (local folder, alias, or cached Hugging Face id) to a :class:`ModelSource`.

    `cache_dir` overrides the Hugging Face hub cache (default: ``$HF_HUB_CACHE`` / ``$HF_HOME/hub``).
    Raises :class:`BadInputError` with one sentence on how to provide the model when it cannot be found.
    """
    name = name.strip()
    if not name:
        raise BadInputError("the model name is empty: pass a local folder, an alias or a Hugging Face id")
    local = Path(name).expanduser()
    if local.is_dir():
        return _from_folder(name, local.resolve())
    if local.exists():
        raise BadInputError(f"model '{name}' is a file, not a folder: pass the folder that holds config.json "
                            "and the weights (as written by save_pretrained)")
    base, _, revision = name.partition("@")
    if (folder := builtin_path(base)) is not None:
        return _builtin(name, base, folder)
    if (hub_id := hub_id_for(base)) is not None:
        return _from_cache(name, hub_id, revision or None, cache_dir, alias=base)
    if _looks_like_path(name):
        raise BadInputError(f"model folder '{name}' does not exist: pass an existing folder, an alias "
                            f"({', '.join(known_aliases())}) or a Hugging Face id")
    return _from_cache(name, base, revision or None, cache_dir, alias=None)


def _from_folder(name: str, path: Path) -> ModelSource:
    _check_model_folder(path, f"folder '{name}'")
    hub_id, revision = _cache_snapshot_identity(path)
    return ModelSource(name=name, path=path, hub_id=hub_id, revision=revision)


def _builtin(name: str, alias: str, folder: Path) -> ModelSource:
    if not (folder / "config.json").is_file():
        raise BadInputError(f"the built-in model '{alias}' is not installed at {folder}: "
                            "reinstall wiseedit (its package ships it) or pass the folder of another model")
    _check_model_folder(folder, f"built-in model '{alias}'")
    return ModelSource(name=name, path=folder, builtin=True)


def _from_cache(name: str, hub_id: str, revision: str | None, cache_dir: str | Path | None,
                alias: str | None) -> ModelSource:
    # Imported here so that resolving a local folder or an alias costs no huggingface_hub import.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        # local_files_only: read the cache's refs/snapshots only; never a request, even without HF_HUB_OFFLINE.
        snapshot = snapshot_download(hub_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
    except (HFValidationError, OSError):  # not a valid id / LocalEntryNotFoundError (an OSError)
        if alias is not None:
            raise BadInputError(f"model '{name}' ({hub_id}) is not in the local Hugging Face cache "
                                f"(no network here): {_HOW_TO_PROVIDE}") from None
        raise BadInputError(f"model '{name}' is not a local folder, a known alias, or a Hugging Face id in "
                            f"the local cache (no network here): {_HOW_TO_PROVIDE}") from None
    path = Path(snapshot)
    _check_model_folder(path, f"the cached snapshot of {hub_id} at {path}")
    return ModelSource(name=name, path=path, hub_id=hub_id, revision=path.name)


def _check_model_folder(path: Path, what: str) -> None:
    """Refuse a folder that from_pretrained could not load, with one sentence instead of its traceback."""
    if not (path / "config.json").is_file():
        raise BadInputError(f"{what} has no config.json: pass the folder that holds config.json and the "
                            "weights (as written by save_pretrained)")
    if not any(next(path.glob(pattern), None) for pattern in _WEIGHT_PATTERNS):
        raise BadInputError(f"{what} has a config.json but no weights (*.safetensors or *.bin): "
                            f"{_HOW_TO_PROVIDE}")


def _cache_snapshot_identity(path: Path) -> tuple[str | None, str | None]:
    """(hub id, revision) of a folder inside a hub cache (``models--org--name/snapshots/<sha>``)."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/"), parts[-1]
    return None, None


def _looks_like_path(name: str) -> bool:
    """True for names a Hugging Face id can never be (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``a\\b``)."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")
