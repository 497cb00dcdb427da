"""A base model with a saved delta attached: what :func:`wiseedit.load_edited` returns.

The editing method hooks into the model's own forward, so ``edited.model.generate(...)`` (or any
forward call) already gives the edited behaviour; the method object stays reachable as
``edited.model.wiseedit`` for ``summary()`` and ``detach()``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from wiseedit.artifacts import EDITS_FILE, Delta, check_delta_base, load_delta, short_hash
from wiseedit.chat import ChatFormat
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError
from wiseedit.artifacts.exported import exported_delta
from wiseedit.generation import complete
from wiseedit.methods.base import EditingMethod
from wiseedit.registry import method_class
from wiseedit.models import DType, LoadedModel, ModelSource, load_base

#: Receives one-line progress notes ("loading model ...") for the user; the CLI prints them to stderr.
LogFn = Callable[[str], None]


@dataclass
class EditedModel:
    """A loaded base model, its tokenizer and, when a delta was given, the method restored from it."""

    base: LoadedModel
    method: EditingMethod | None = None
    delta: Delta | None = None

    def __repr__(self) -> str:  # the default would print the whole model
        delta = repr(str(self.delta.path)) if self.delta is not None else None
        method = self.method.name if self.method is not None else None
        return f"EditedModel(model={self.base.source.name!r}, method={method!r}, delta={delta})"

    @property
    def model(self):
        """The Hugging Face model (edited when a method is attached)."""
        return self.base.model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def chat(self) -> ChatFormat:
        """How prompts are put to the model: the delta's chat format (raw without a delta)."""
        return ChatFormat.from_json(self.delta.config.get("chat_template")) if self.delta is not None else ChatFormat()

    def generate(self, prompts: list[str], max_new_tokens: int = 20) -> list[str]:
        """Greedy continuations of `prompts` by the model as it is now (edited if a method is attached),
        each prompt put through the chat template when the delta was made with one."""
        return complete(self.model, self.tokenizer, self._rendered(prompts), max_new_tokens, method=self.method)

    def _rendered(self, prompts: list[str]) -> list[str]:
        chat = self.chat
        return [chat.prompt(self.tokenizer, p) for p in prompts]

    def generate_base(self, prompts: list[str], max_new_tokens: int = 20) -> list[str]:
        """Greedy continuations by the unedited base: the method is detached for the call, then
        restored from the delta, so the edited model is back afterwards."""
        if self.method is None:
            return self.generate(prompts, max_new_tokens)
        self.method.detach()
        self.model.wiseedit = None
        try:
            return complete(self.model, self.tokenizer, self._rendered(prompts), max_new_tokens)
        finally:
            self.method = attach(self.base, self.delta)

    def describe(self) -> dict:
        """JSON-able facts about the model and the delta (what ``wiseedit load`` prints)."""
        info = {"model": self.base.source.name, "model_path": str(self.base.source.path),
                "base_fingerprint": self.base.fingerprint}
        if self.delta is None:
            return info | {"delta": None}
        config = self.delta.config
        return info | {
            "delta": str(self.delta.path), "method": self.delta.method, "edits": self.delta.num_edits,
            "edited_module": config.get("edited_module"),
            "made_on": config.get("base_model_name_or_path"),
            "base_check": "ok",  # a mismatch never gets this far: attaching refuses it
            "chat_template": self.chat.to_json(),
            "created": config.get("created"), "updated": config.get("updated"),
            "summary": self.method.summary() if self.method is not None else {},
        }


def base_name(source: ModelSource) -> str:
    """The name a delta records as ``base_model_name_or_path``: the hub id for hub models, the alias
    for built-in ones, else the absolute folder (a relative one would break from another directory)."""
    if source.hub_id is not None:
        return source.hub_id
    if source.builtin:
        return source.name.partition("@")[0]
    return str(source.path)


def attach(base: LoadedModel, delta: Delta) -> EditingMethod:
    """Restore `delta`'s method onto `base` after checking it was made on these weights, and expose it
    as ``base.model.wiseedit``."""
    check_delta_base(delta, base.fingerprint, base.source.name, base.model)
    cls = method_class(delta.method)
    state = replace(delta.state, edits=taught_edits(delta, base.tokenizer)) if cls.restores_from_edits else delta.state
    method = cls.restore(base.model, base.tokenizer, state)
    base.model.wiseedit = method
    return method


def taught_edits(delta: Delta, tokenizer) -> list[EditRecord]:
    """`delta`'s edits in the order of its log, as its method was taught them: each prompt put through
    the chat template the delta records (the log keeps the user's text), with its target and id. The
    log's other fields (rephrases, probes) play no part in restoring a method and are left out."""
    chat = ChatFormat.from_json(delta.config.get("chat_template"))
    records = []
    for number, entry in enumerate(delta.edits_log, start=1):
        prompt, target = entry.get("prompt"), entry.get("target")
        if not (isinstance(prompt, str) and isinstance(target, str)):
            raise BadInputError(f"{Path(delta.path) / EDITS_FILE}:{number}: an edit of the log needs a string "
                                "prompt and target; the delta is damaged")
        records.append(EditRecord(prompt=chat.prompt(tokenizer, prompt), target=target,
                                  id=str(entry.get("id", number))))
    return records


def load_edited(model: str | None, delta: str | Path | Delta | None = None, *, device: str = "auto",
                dtype: DType = "auto", log: LogFn | None = None) -> EditedModel:
    """Load base `model` and attach `delta` (a delta directory, or one already loaded) when given.

    `model` may be None when `delta` is given: the base the delta records is loaded. The delta is read
    and validated before the model is loaded, and refused (BadInputError) on a base whose weights
    differ from the one it was made on. A self-contained export (``wiseedit export``) brings its own
    delta, used when no `delta` is given.
    """
    if delta is None:
        delta = exported_delta(model)
    saved = delta if isinstance(delta, Delta) or delta is None else load_delta(Path(delta))
    name = model if model is not None else recorded_base(saved)
    if log:
        log(f"loading model {name}")
    base = load_base(name, device=device, dtype=dtype)
    if saved is None:
        return EditedModel(base)
    if log:
        log(f"attaching {saved.method} delta {saved.path} ({saved.num_edits} edits, base "
            f"{short_hash(base.fingerprint)})")
    return EditedModel(base, attach(base, saved), saved)


def recorded_base(delta: Delta | None) -> str:
    """The base model `delta` records (``base_model_name_or_path``); BadInputError without a delta."""
    if delta is None:
        raise BadInputError("no model given: pass model (a folder, an alias or a Hugging Face id)",
                            cli="no model given: pass --model (a folder, an alias or a Hugging Face id)")
    return delta.config["base_model_name_or_path"]
