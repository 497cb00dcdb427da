"""Chat models: putting each prompt to the model through its chat template.

An instruct model answers a question asked in its chat format, not a bare sentence. With
``--chat-template auto`` (the default) and a tokenizer that has a ``chat_template``, every prompt an
edit or an evaluation feeds the model (edit prompt, rephrases, locality and portability probes, WISE's
irrelevant text, the temporal OOD probe, ``wiseedit load -p``) is rendered as one user message with the
generation prompt appended (``add_generation_prompt=True``), and the target follows it, by the
tokenisation rule of :mod:`wiseedit.tokens`. Rendering is done on the text, once, where
the records enter editing or evaluation, so every method and metric tokenises the same string.

The template applied is recorded in the delta's config (``chat_template``: mode and the Jinja text)
and in evaluation results, and a delta is always used with the template it was made with, read from
the delta itself, whatever the tokenizer now carries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence, get_args

from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError

ChatTemplateMode = Literal["auto", "none"]
DEFAULT_MODE: ChatTemplateMode = "auto"


@dataclass(frozen=True)
class ChatFormat:
    """How prompts are put to the model: raw (`template` None) or through a chat template."""

    mode: ChatTemplateMode = "none"  # what was asked: auto (the tokenizer's template, if any) or none
    template: str | None = None  # the Jinja template applied; None: prompts go in as they are

    @classmethod
    def resolve(cls, mode: str | None, tokenizer) -> "ChatFormat":
        """The format `mode` gives with `tokenizer` (None: the default, auto)."""
        mode = mode or DEFAULT_MODE
        if mode not in get_args(ChatTemplateMode):
            allowed = f"must be one of {', '.join(get_args(ChatTemplateMode))}, got {mode!r}"
            raise BadInputError(f"chat_template {allowed}", cli=f"--chat-template {allowed}")
        template = getattr(tokenizer, "chat_template", None) if mode == "auto" else None
        if isinstance(template, dict):  # several named templates: the default one is what chat uses
            template = template.get("default")
        return cls(mode, template if isinstance(template, str) and template.strip() else None)

    @classmethod
    def from_json(cls, data: dict | None) -> "ChatFormat":
        """The format a delta config records (None or absent: a delta made before chat support, raw)."""
        if not data:
            return cls()
        return cls(data.get("mode", "none"), data.get("template"))

    def to_json(self) -> dict:
        return {"mode": self.mode, "template": self.template}

    @property
    def applied(self) -> bool:
        return self.template is not None

    def prompt(self, tokenizer, text: str) -> str:
        """`text` as the model is to see it: a user message and the assistant's turn opened."""
        if self.template is None:
            return text
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], chat_template=self.template,
                                                 tokenize=False, add_generation_prompt=True)
        # Templates usually write BOS themselves; tokenizer(text) adds one again where it adds BOS.
        bos = tokenizer.bos_token
        if bos and rendered.startswith(bos) and _adds_bos(tokenizer):
            rendered = rendered[len(bos):]
        return rendered

    def record(self, tokenizer, record: EditRecord) -> EditRecord:
        """`record` with every text that is put to the model rendered (ids, targets, answers unchanged)."""
        if self.template is None:
            return record
        p = lambda text: self.prompt(tokenizer, text)  # noqa: E731
        extra = dict(record.extra)
        if isinstance(extra.get("ood_rephrase"), str):
            extra["ood_rephrase"] = p(extra["ood_rephrase"])
        return replace(
            record, prompt=p(record.prompt), rephrase=tuple(p(r) for r in record.rephrase),
            locality=tuple(replace(q, prompt=p(q.prompt)) for q in record.locality),
            portability=tuple(replace(q, prompt=p(q.prompt)) for q in record.portability),
            irrelevant=p(record.irrelevant) if record.irrelevant is not None else None, extra=extra)

    def records(self, tokenizer, records: Sequence[EditRecord]) -> list[EditRecord]:
        return [self.record(tokenizer, r) for r in records]


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return bos is not None and bool(ids) and ids[0] == bos
