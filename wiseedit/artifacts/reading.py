"""Reading the three files of a delta directory, each problem reported as one sentence naming the file.

Used by :func:`wiseedit.artifacts.delta.load_delta`; nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wiseedit.artifacts.atomic import backup_path, interrupted_write_message
from wiseedit.errors import BadInputError

#: The delta layout version this wiseedit writes and the newest it reads. Version 3 records the sha256 of
#: ``edits.jsonl`` (``edits_sha256``), which a method's state may refer to instead of copying its texts
#: (WISE's memories name their edits by position in the log); version 2 keeps the method's settings
#: (``method_settings``) apart from its state (``method_state``); a version 1 delta has them inside its
#: state, where the method's ``restore`` still finds them.
FORMAT_VERSION = 3
CONFIG_FILE = "wiseedit_config.json"
TENSORS_FILE = "delta.safetensors"
EDITS_FILE = "edits.jsonl"
#: Extensions of pickle-based tensor files, refused rather than loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# key -> (accepted types, description for the error message)
_REQUIRED: dict[str, tuple[tuple[type, ...], str]] = {
    "format_version": ((int,), "an integer"),
    "method": ((str,), "a string"),
    "method_state": ((dict,), "an object"),
    "edited_module": ((str, type(None)), "a string or null"),
    "base_model_name_or_path": ((str,), "a string"),
    "base_revision": ((str, type(None)), "a string or null"),
    "base_fingerprint": ((str,), "a string"),
    "seed": ((int, type(None)), "an integer or null"),
    "num_edits": ((int,), "an integer"),
    "versions": ((dict,), "an object"),
    "created": ((str,), "a string"),
    "updated": ((str,), "a string"),
}


def short_hash(fingerprint: str) -> str:
    """``sha256:0123456789ab…``: the algorithm and the first 12 hex digits, for messages."""
    algorithm, _, digest = fingerprint.partition(":")
    return f"{algorithm}:{digest[:12]}…" if digest else f"{fingerprint[:12]}…"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_version(file: Path, version) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInputError(f"{file}: format_version {version!r} is not a valid delta format version")
    if version > FORMAT_VERSION:
        raise BadInputError(
            f"{file} has format_version {version}, newer than this wiseedit reads "
            f"({FORMAT_VERSION}); upgrade wiseedit (pip install -U wiseedit) to load it"
        )


def _check_keys(file: Path, config: dict) -> None:
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise BadInputError(f"{file} lacks the required key(s) {', '.join(missing)}")
    for key, (types, description) in _REQUIRED.items():
        value = config[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise BadInputError(f"{file}: {key} should be {description}, not {value!r}")
    if config["num_edits"] < 0:
        raise BadInputError(f"{file}: num_edits should not be negative, not {config['num_edits']}")
    if config["format_version"] >= 2 and not isinstance(config.get("method_settings"), dict):
        raise BadInputError(f"{file}: method_settings should be an object, not {config.get('method_settings')!r}")
    digest = config.get("edits_sha256")
    if config["format_version"] >= 3 and not (isinstance(digest, str) and digest.startswith("sha256:")):
        raise BadInputError(f"{file}: edits_sha256 should look like 'sha256:<hex>', not {digest!r}")
    if not config["base_fingerprint"].startswith("sha256:"):
        raise BadInputError(
            f"{file}: base_fingerprint should look like 'sha256:<hex>', not {config['base_fingerprint']!r}"
        )


def read_config(path: Path) -> dict:
    """The validated ``wiseedit_config.json`` of the delta directory `path`."""
    if not path.exists():
        if backup_path(path).exists():
            raise BadInputError(interrupted_write_message(path))
        raise BadInputError(f"delta directory {path} does not exist")
    if not path.is_dir():
        raise BadInputError(f"{path} is not a delta directory (it is a file)")
    file = path / CONFIG_FILE
    if not file.is_file():
        raise BadInputError(f"{path} is not a wiseedit delta: {file} is missing")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BadInputError(f"{file}:{error.lineno}: not valid JSON ({error.msg})") from None
    except (UnicodeDecodeError, OSError) as error:
        raise BadInputError(f"{file} cannot be read ({_first_line(error)})") from None
    if not isinstance(config, dict):
        raise BadInputError(f"{file} should hold a JSON object, not {type(config).__name__}")
    if "format_version" not in config:
        raise BadInputError(f"{file} lacks the required key(s) format_version")
    _check_version(file, config["format_version"])
    _check_keys(file, config)
    return config


def tensor_manifest(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    """``{name: {"dtype": "float32", "shape": [4, 8]}}``: what ``wiseedit_config.json`` records of the
    tensors saved beside it."""
    return {name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            for name, t in sorted(tensors.items())}


def _check_manifest(path: Path, tensors: dict[str, torch.Tensor], manifest) -> None:
    file, config = path / TENSORS_FILE, path / CONFIG_FILE
    if not isinstance(manifest, dict):
        raise BadInputError(f"{config}: tensors should be an object, not {manifest!r}")
    found = tensor_manifest(tensors)
    unknown = sorted(set(found) - set(manifest))
    if unknown:
        raise BadInputError(f"{file} holds tensor {unknown[0]!r}, which {config} does not list; the delta is "
                            "damaged (or was changed by hand)")
    missing = sorted(set(manifest) - set(found))
    if missing:
        raise BadInputError(f"{file} lacks tensor {missing[0]!r}, which {config} lists; the delta is damaged")
    for name, saved in found.items():
        listed = manifest[name]
        if saved != listed:
            raise BadInputError(
                f"{file}: tensor {name!r} is {saved['dtype']} of shape {tuple(saved['shape'])}, but {config} "
                f"records {_describe(listed)}; the delta is damaged")


def _describe(entry) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("shape"), list):
        return f"{entry.get('dtype')} of shape {tuple(entry['shape'])}"
    return repr(entry)


def _check_readable(file: Path) -> None:
    """A file the user may not read is a permission problem, not damage: say which."""
    try:
        with open(file, "rb"):
            pass
    except OSError as error:
        raise BadInputError(f"{file} cannot be read ({error.strerror or _first_line(error)})") from None


def read_tensors(path: Path, config: dict) -> dict[str, torch.Tensor]:
    """The tensors of ``delta.safetensors`` in `path`, on CPU, checked against the manifest of the
    delta's `config` (its ``tensors`` key, when it has one); pickle files are refused, never read."""
    method = config["method"]
    file = path / TENSORS_FILE
    if not file.is_file():
        pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise BadInputError(
                f"{pickles[0]} is a pickle-format file, which wiseedit never loads (unsafe); "
                f"a delta keeps its tensors in {file}, which is missing"
            )
        raise BadInputError(f"{file} is missing")
    _check_readable(file)
    try:
        tensors = load_file(str(file), device="cpu")
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise BadInputError(
            f"{file} is not a readable safetensors file ({_first_line(error)}); the delta is damaged"
        ) from None
    if meta.get("method", method) != method:
        raise BadInputError(
            f"{file} holds tensors of method {meta['method']!r} but {path / CONFIG_FILE} says {method!r}"
        )
    if "tensors" in config:
        _check_manifest(path, tensors, config["tensors"])
    return tensors


def edits_digest(text: str) -> str:
    """``sha256:<hex>`` of the text of ``edits.jsonl`` (its UTF-8 bytes): what ``edits_sha256`` records."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_edit_log(path: Path, num_edits: int, digest: str | None = None) -> tuple[str, list[dict]]:
    """``edits.jsonl`` of `path`, verbatim and parsed; checks ``seq`` runs 1..`num_edits` and, when the
    config records one (format 3), that the file's sha256 is `digest`."""
    file = path / EDITS_FILE
    if not file.is_file():
        raise BadInputError(f"{file} is missing")
    try:
        text = file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        raise BadInputError(f"{file} cannot be read ({_first_line(error)})") from None
    if text and not text.endswith("\n"):
        raise BadInputError(f"{file} does not end with a newline (it was cut short)")
    log = []
    lines = text.split("\n")[:-1]  # not splitlines(): JSON may hold U+2028 unescaped
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise BadInputError(f"{file}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(entry, dict):
            raise BadInputError(f"{file}:{number}: should be a JSON object")
        if entry.get("seq") != number:
            raise BadInputError(f"{file}:{number}: seq should be {number}, not {entry.get('seq')!r}")
        log.append(entry)
    if len(log) != num_edits:
        raise BadInputError(
            f"{file} has {len(log)} edits but {path / CONFIG_FILE} says num_edits {num_edits}"
        )
    if digest is not None and edits_digest(text) != digest:
        raise BadInputError(
            f"{file} is not the edit log {path / CONFIG_FILE} was saved with (its sha256 is "
            f"{short_hash(edits_digest(text))}, the config records {short_hash(digest)}); the delta is damaged "
            "(or its log was changed by hand)"
        )
    return text, log
