"""Refusing, before any model is loaded, edits too long for the model's context.

A prompt with its answer longer than the positions a model has is silently cut or extrapolated by
some architectures (Llama's rotary positions) and crashes others (GPT-2's learned positions: an index
error after minutes of loading). The context length is read from ``config.json`` and the texts are
tokenised with the model's tokenizer (fast to load), as editing and evaluation will tokenise them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

from wiseedit.edits.record import EditRecord
from wiseedit.errors import InputProblems
from wiseedit.tokens import encode_pair

#: config.json keys that hold the number of positions, by the architectures' own names.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")
#: Tokens kept free beyond prompt + answer: WISE's context templates (about 12 tokens before the prompt)
#: and the two extra tokens the edit table generates.
CONTEXT_RESERVE = 16
_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"  # transformers' own key for it


def context_length(model_path: Path) -> tuple[int, str] | None:
    """(positions, the config key they come from) of the model in `model_path`; None when its config
    does not say (then nothing is checked)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for scope in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, key
    return None


def _texts(record: EditRecord) -> Iterator[tuple[str, str, str | None]]:
    """(field, text put to the model, its answer) of every text of `record` that a method or metric feeds."""
    yield "prompt", record.prompt, record.target
    for i, text in enumerate(record.rephrase):
        yield f"rephrase[{i}]", text, record.target
    for i, probe in enumerate(record.locality):
        yield f"locality[{i}].prompt", probe.prompt, probe.answer
    for i, probe in enumerate(record.portability):
        yield f"portability[{i}].prompt", probe.prompt, probe.answer
    if record.irrelevant is not None:
        yield "irrelevant", record.irrelevant, None


def check_context(records: Sequence[EditRecord], tokenizer, model_path: Path, model_name: str) -> None:
    """Raise InputProblems (one line per record, ``file:line: field: ...``) when a text of `records`
    with its answer, plus :data:`CONTEXT_RESERVE`, exceeds the context of the model in `model_path`.

    `records` are as the model will see them (chat template applied, see :mod:`wiseedit.chat`).
    """
    found = context_length(model_path)
    if found is None:
        return
    limit, key = found
    room = limit - CONTEXT_RESERVE
    # this tokenizer only counts: transformers' "longer than the maximum" log line would be noise here
    getattr(tokenizer, "deprecation_warnings", {})[_LONG_WARNING] = True
    problems = []
    for record in records:
        for field, text, answer in _texts(record):
            if answer is None:
                n = len(tokenizer(text)["input_ids"])
            else:
                pair = encode_pair(tokenizer, text, answer)
                n = len(pair.prompt_ids) + len(pair.answer_ids)
            if n > room:
                what = "tokens" if answer is None else "tokens with its answer"
                problems.append(f"{record.source or record.id}: {field}: {n} {what}, more than model {model_name} "
                                f"takes ({key} {limit}, less {CONTEXT_RESERVE} kept for generation and "
                                "templates); shorten it or leave this edit out")
                break
    if problems:
        raise InputProblems(problems)
