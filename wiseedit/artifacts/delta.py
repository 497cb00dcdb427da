"""The delta directory: what a method learned from its edits, saved apart from the base model.

Layout (``format_version`` 3), written as a whole by :func:`save_delta` through
:func:`~wiseedit.artifacts.atomic.atomic_directory`:

- ``wiseedit_config.json``: format version, method, its settings (``method_settings``: the options it
  was created with) and its state (``method_state``: what editing changed: counters, ...; it refers to
  edits by their position in ``edits.jsonl`` rather than copying their texts), edited module, base
  model name/revision/fingerprint, seed, number of edits, ``edits_sha256`` (the sha256 of
  ``edits.jsonl``: loading refuses a log that is not the one saved), library versions, ``created`` and
  ``updated`` (ISO UTC), and ``tensors``: the name, dtype and shape of every tensor of
  ``delta.safetensors`` (loading refuses a tensor file that does not match it: a tensor of another
  shape, or one the delta does not hold, is damage, not something to run or silently drop; deltas
  written before this key are read without that check); pretty-printed, sorted keys, trailing newline.
- ``delta.safetensors``: every tensor of the method state, on CPU and contiguous; metadata
  ``format``, ``wiseedit_format_version``, ``method`` (strings). Always written, also with no tensors
  (an empty safetensors file is valid and keeps every delta the same shape).
- ``edits.jsonl``: the audit log, one line per applied edit in order: the edit's native JSON form plus
  ``seq`` (1-based) and ``applied`` (the UTC time of the save that added it). Appending keeps earlier
  lines byte for byte.

Loading never unpickles: tensors are read with ``safetensors.torch.load_file`` onto the CPU (callers
move them), and a folder holding only ``.bin``/``.pt`` files is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from wiseedit.artifacts.atomic import atomic_directory, atomic_write_text
from wiseedit.artifacts.reading import (
    CONFIG_FILE,
    EDITS_FILE,
    FORMAT_VERSION,
    TENSORS_FILE,
    edits_digest,
    read_config,
    read_edit_log,
    read_tensors,
    short_hash,
    tensor_manifest,
)
from wiseedit.errors import BadInputError
from wiseedit.methods.base import MethodState


@dataclass
class Delta:
    """A loaded (or just saved) delta directory. `config` is ``wiseedit_config.json``; `state` the
    method's saved form (tensors on CPU); `edits_log` the parsed lines of ``edits.jsonl``."""

    path: Path
    config: dict
    state: MethodState
    edits_log: list[dict]
    edits_text: str | None = field(default=None, repr=False, compare=False)  # edits.jsonl verbatim

    def __repr__(self) -> str:  # the default would print every tensor and every line of the log
        return f"Delta(path={str(self.path)!r}, method={self.method!r}, num_edits={self.num_edits})"

    @property
    def method(self) -> str:
        """The editing method's registry name."""
        return self.config["method"]

    @property
    def num_edits(self) -> int:
        """How many edits the delta holds."""
        return int(self.config["num_edits"])

    @property
    def base_fingerprint(self) -> str:
        """``sha256:...`` of the base weights the delta was made on."""
        return self.config["base_fingerprint"]


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies safetensors accepts (tensors sharing storage are cloned)."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"method state tensors must map str to Tensor, got {name!r}")
        tensor = tensor.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _edit_lines(new_edits: list[dict], first_seq: int, applied: str) -> str:
    lines = []
    for offset, edit in enumerate(new_edits):
        entry = {**edit, "seq": first_seq + offset, "applied": applied}
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    return "".join(lines)


def _previous_log(previous: Delta | None) -> tuple[str, list[dict]]:
    if previous is None:
        return "", []
    if previous.edits_text is not None:
        return previous.edits_text, list(previous.edits_log)
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in previous.edits_log), list(
        previous.edits_log
    )


def _check_previous(previous: Delta, method: str, base_fingerprint: str) -> None:
    if previous.method != method:
        raise BadInputError(
            f"cannot add {method} edits to delta {previous.path}, which was made with {previous.method}"
        )
    if previous.base_fingerprint != base_fingerprint:
        raise BadInputError(
            f"cannot add edits to delta {previous.path}: it was made on base weights "
            f"{short_hash(previous.base_fingerprint)}, not {short_hash(base_fingerprint)}"
        )


def save_delta(
    path: Path,
    *,
    method: str,
    state: MethodState,
    edited_module: str | None,
    base_name: str,
    base_revision: str | None,
    base_fingerprint: str,
    seed: int | None,
    new_edits: list[dict],
    previous: Delta | None = None,
    overwrite: bool = False,
    chat_template: dict | None = None,
) -> Delta:
    """Write the whole delta directory at `path` atomically and return it as :func:`load_delta` would.

    `state` is the method's complete state after `new_edits` (their native JSON forms, see
    ``EditRecord.to_json``) were applied on top of `previous` (the delta they continue, or None). The
    edits log is `previous`'s, verbatim, plus one line per new edit; ``created`` is kept from
    `previous`. An existing `path` is replaced only if `overwrite` or it is `previous`'s own directory
    (appending in place); otherwise BadInputError("<path> already exists"). `chat_template` is how
    prompts were put to the model (:class:`wiseedit.chat.ChatFormat`; None: `previous`'s, else raw).
    """
    path = Path(path)
    if previous is not None:
        _check_previous(previous, method, base_fingerprint)
        overwrite = overwrite or path.resolve() == Path(previous.path).resolve()
    now = _utc_now()
    old_text, log = _previous_log(previous)
    new_text = _edit_lines(new_edits, len(log) + 1, now)
    edits_text = old_text + new_text
    log += [json.loads(line) for line in new_text.split("\n")[:-1]]
    config = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "method_settings": state.settings if state.settings is not None else {},
        "method_state": state.config,
        "edited_module": edited_module,
        "base_model_name_or_path": base_name,
        "base_revision": base_revision,
        "base_fingerprint": base_fingerprint,
        "seed": seed,
        "chat_template": chat_template if chat_template is not None else (
            previous.config.get("chat_template") if previous is not None else None),
        "num_edits": len(log),
        "edits_sha256": edits_digest(edits_text),
        "versions": {p: _version(p) for p in ("wiseedit", "torch", "transformers", "safetensors")},
        "created": previous.config.get("created", now) if previous is not None else now,
        "updated": now,
    }
    tensors = _cpu_tensors(state.tensors)
    config["tensors"] = tensor_manifest(tensors)
    config_text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    tensor_meta = {"format": "pt", "wiseedit_format_version": str(FORMAT_VERSION), "method": method}
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE), metadata=tensor_meta)
        atomic_write_text(tmp / EDITS_FILE, edits_text)
        atomic_write_text(tmp / CONFIG_FILE, config_text)
    saved = json.loads(config_text)  # exactly what a reload gives (tuples become lists, ...)
    return Delta(path, saved, _method_state(saved, tensors, Path(path)), log, edits_text)


def load_delta(path: Path) -> Delta:
    """Read and validate the delta directory at `path`; tensors stay on CPU.

    Every problem (missing directory or file, bad JSON, missing keys, a format_version newer than this
    wiseedit reads, an unreadable or pickle-only tensor file, an inconsistent edits log or one whose
    sha256 is not the one the config records) raises BadInputError with one sentence naming the file.
    """
    path = Path(path)
    config = read_config(path)
    tensors = read_tensors(path, config)
    edits_text, log = read_edit_log(path, config["num_edits"], config.get("edits_sha256"))
    return Delta(path, config, _method_state(config, tensors, path), log, edits_text)


def _method_state(config: dict, tensors: dict[str, torch.Tensor], path: Path) -> MethodState:
    """The method's saved form; a version 1 delta has no ``method_settings`` (settings None: they are in
    its state, in the method's older layout)."""
    return MethodState(config["method_state"], tensors, path, settings=config.get("method_settings"))


def check_delta_base(delta: Delta, fingerprint: str, base_name: str, model=None) -> None:
    """Refuse (BadInputError) to use `delta` on a model whose weights' `fingerprint` differs from the
    base the delta was made on; `base_name` names the loaded model in the message.

    With the unedited `model`, a delta that records a v1 fingerprint (made before v2, see
    :mod:`wiseedit.models.fingerprint`) is accepted on its base too, and from then on records
    `fingerprint` in memory, so the next save upgrades it."""
    if fingerprint == delta.base_fingerprint:
        return
    if model is not None:
        from wiseedit.models.fingerprint import same_base  # imports torch models code: only when needed

        if same_base(delta.base_fingerprint, model, fingerprint):
            delta.config["base_fingerprint"] = fingerprint
            return
    made_on = delta.config.get("base_model_name_or_path")
    raise BadInputError(
        f"delta {delta.path} was made on base {made_on} ({short_hash(delta.base_fingerprint)}) "
        f"but the weights of the loaded model {base_name} differ ({short_hash(fingerprint)}); "
        "load it on the base it was made for"
    )
