"""Turning one parsed JSON object into an EditRecord, whichever dataset layout it follows.

The layout is detected per record from its fields (files are sometimes concatenated):

- native: ``prompt``, ``target`` (required), ``id``, ``subject``, ``rephrase`` (str or list of str),
  ``locality`` and ``portability`` (lists of ``{"prompt", "answer"}``), ``irrelevant``.
- ZsRE (MEND / EasyEdit): ``src`` -> prompt, ``alt`` -> target, ``rephrase``, ``subject``, ``loc`` +
  ``loc_ans`` -> one locality probe (``loc`` kept verbatim, "nq question: " prefix included, as the
  reference does), ``portability`` ``{"New Question", "New Answer"}`` (or a list of them).
- CounterFact (EasyEdit, flattened) and the WISE hallucination / temporal sets: ``prompt``,
  ``target_new``, ``subject``, ``rephrase_prompt``, ``locality_prompt`` + ``locality_ground_truth``.
  The temporal ``ood_rephrase`` is an out-of-distribution probe, not a paraphrase: it stays in `extra`.
  An empty ``locality_ground_truth`` (13 records of the WISE files, whose locality prompts are whole
  passages) gives no locality probe; both fields then stay in `extra`.
- ROME CounterFact: ``requested_rewrite`` {``prompt`` with "{}", ``subject``, ``target_new.str``,
  ``target_true.str``}; prompt is the template filled with the subject, ``paraphrase_prompts`` are the
  rephrases and each of ``neighborhood_prompts`` is a locality probe whose answer is ``target_true``
  (neighbourhood subjects share the case's original object, which the edit must not move).

Every field not consumed is kept in ``EditRecord.extra`` (e.g. ZsRE ``answers``, CounterFact
``ground_truth`` and ``case_id``). The id is ``id`` (string or integer), else ``case_id``, else the
caller's default.
"""

from __future__ import annotations

from typing import Any, Callable

from wiseedit.edits.record import EditRecord, LocalityProbe, PortabilityProbe

#: Fields an edit's id is read from, in order of preference.
ID_KEYS = ("id", "case_id")

# Fields that mark a record as CounterFact-like even when its `target_new` is missing.
_COUNTERFACT_MARKS = ("rephrase_prompt", "locality_prompt", "locality_ground_truth", "ood_rephrase")

_UNRECOGNISED = (
    "missing (expected a native record with prompt/target, a ZsRE record with src/alt, "
    "or a CounterFact record with prompt/target_new)"
)


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, for messages ("an array", "a number (3)", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


class _Checker:
    """Reads typed values out of one record, noting every problem (``where: path: what``) instead of
    stopping at the first, so a user fixes a whole file in one pass."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = problems

    def bad(self, path: str, what: str) -> None:
        self.problems.append(f"{self.where}: {path}: {what}")

    def string(self, value: Any, path: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.bad(path, f"expected a string, got {json_kind(value)}")
            return None
        if not allow_empty and not value.strip():
            self.bad(path, "empty string")
            return None
        return value

    def field(self, obj: dict, key: str, path: str | None = None, *, required: bool = False) -> str | None:
        """`obj[key]` as a non-empty string; absent or null is None (a problem when required)."""
        path = path or key
        if obj.get(key) is None:
            if required:
                self.bad(path, "missing" if key not in obj else "expected a string, got null")
            return None
        return self.string(obj[key], path)

    def strings(self, obj: dict, key: str) -> tuple[str, ...]:
        """A string or a list of strings, as a tuple."""
        value = obj.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(s for s in [self.string(value, key)] if s is not None)
        if not isinstance(value, list):
            self.bad(key, f"expected a string or a list of strings, got {json_kind(value)}")
            return ()
        items = [self.string(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(s for s in items if s is not None)

    def probes(self, obj: dict, key: str, cls: type) -> tuple:
        """A list of ``{"prompt", "answer"}`` objects, as a tuple of `cls`."""
        value = obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.bad(key, f"expected a list of {{prompt, answer}} objects, got {json_kind(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.bad(f"{key}[{i}]", f"expected a {{prompt, answer}} object, got {json_kind(item)}")
                continue
            prompt = self.field(item, "prompt", f"{key}[{i}].prompt", required=True)
            answer = self.field(item, "answer", f"{key}[{i}].answer", required=True)
            if prompt is not None and answer is not None:
                out.append(cls(prompt, answer))
        return tuple(out)

    def record_id(self, obj: dict, default: str) -> str | None:
        for key in ID_KEYS:
            value = obj.get(key)
            if value is None:
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            if isinstance(value, str):
                return self.string(value, key)
            self.bad(key, f"expected a string or an integer, got {json_kind(value)}")
            return None
        return default


# Each converter returns the EditRecord fields it read (None where a required one was bad) and the
# keys it consumed; whatever else the record holds goes to `extra`.
_Converted = tuple[dict, set]


def _native(obj: dict, c: _Checker) -> _Converted:
    fields = dict(
        prompt=c.field(obj, "prompt", required=True),
        target=c.field(obj, "target", required=True),
        subject=c.field(obj, "subject"),
        rephrase=c.strings(obj, "rephrase"),
        locality=c.probes(obj, "locality", LocalityProbe),
        portability=c.probes(obj, "portability", PortabilityProbe),
        irrelevant=c.field(obj, "irrelevant"),
    )
    return fields, {"id", *fields}


def _zsre_portability(obj: dict, c: _Checker) -> tuple[PortabilityProbe, ...]:
    value = obj.get("portability")
    if value is None:
        return ()
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        c.bad("portability", f"expected a {{New Question, New Answer}} object, got {json_kind(value)}")
        return ()
    out = []
    for i, item in enumerate(items):
        path = "portability" if isinstance(value, dict) else f"portability[{i}]"
        if not isinstance(item, dict):
            c.bad(path, f"expected a {{New Question, New Answer}} object, got {json_kind(item)}")
            continue
        question = c.field(item, "New Question", f"{path}.New Question", required=True)
        answer = c.field(item, "New Answer", f"{path}.New Answer", required=True)
        if question is not None and answer is not None:
            out.append(PortabilityProbe(question, answer))
    return tuple(out)


def _zsre(obj: dict, c: _Checker) -> _Converted:
    locality: tuple[LocalityProbe, ...] = ()
    if "loc" in obj or "loc_ans" in obj:
        loc = c.field(obj, "loc", required=True)
        loc_ans = c.field(obj, "loc_ans", required=True)
        if loc is not None and loc_ans is not None:
            locality = (LocalityProbe(loc, loc_ans),)
    fields = dict(
        prompt=c.field(obj, "src", required=True),
        target=c.field(obj, "alt", required=True),
        subject=c.field(obj, "subject"),
        rephrase=c.strings(obj, "rephrase"),
        locality=locality,
        portability=_zsre_portability(obj, c),
    )
    return fields, {"id", "src", "alt", "subject", "rephrase", "loc", "loc_ans", "portability"}


def _counterfact(obj: dict, c: _Checker) -> _Converted:
    consumed = {"id", "prompt", "target_new", "subject", "rephrase_prompt"}
    locality: tuple[LocalityProbe, ...] = ()
    if "locality_prompt" in obj or "locality_ground_truth" in obj:
        prompt = c.field(obj, "locality_prompt", required=True)
        answer = obj.get("locality_ground_truth")
        if answer is None:
            c.bad("locality_ground_truth", "missing")
        else:
            answer = c.string(answer, "locality_ground_truth", allow_empty=True)
        if prompt is not None and answer and answer.strip():  # empty answer: no probe (see above)
            locality = (LocalityProbe(prompt, answer),)
            consumed |= {"locality_prompt", "locality_ground_truth"}
    fields = dict(
        prompt=c.field(obj, "prompt", required=True),
        target=c.field(obj, "target_new", required=True),
        subject=c.field(obj, "subject"),
        rephrase=c.strings(obj, "rephrase_prompt"),
        locality=locality,
    )
    return fields, consumed


def _rome(obj: dict, c: _Checker) -> _Converted:
    rewrite = obj["requested_rewrite"]
    if not isinstance(rewrite, dict):
        c.bad("requested_rewrite", f"expected an object, got {json_kind(rewrite)}")
        return dict(prompt=None, target=None), set()
    template = c.field(rewrite, "prompt", "requested_rewrite.prompt", required=True)
    subject = c.field(rewrite, "subject", "requested_rewrite.subject", required=True)
    if template is not None and "{}" not in template:
        c.bad("requested_rewrite.prompt", 'expected a template with "{}" where the subject goes')
        template = None
    targets = {}
    for key in ("target_new", "target_true"):
        value = rewrite.get(key)
        path = f"requested_rewrite.{key}"
        if not isinstance(value, dict):
            c.bad(path, "missing" if value is None else f"expected an object, got {json_kind(value)}")
            targets[key] = None
        else:
            targets[key] = c.field(value, "str", f"{path}.str", required=True)
    neighbours = c.strings(obj, "neighborhood_prompts")
    truth = targets["target_true"]
    fields = dict(
        # replace, not str.format: a stray brace in the template must not raise
        prompt=template.replace("{}", subject) if template and subject else None,
        target=targets["target_new"],
        subject=subject,
        rephrase=c.strings(obj, "paraphrase_prompts"),
        locality=tuple(LocalityProbe(p, truth) for p in neighbours) if truth else (),
        portability=_zsre_portability(obj, c),
    )
    return fields, {"id", "paraphrase_prompts", "neighborhood_prompts", "portability"}


def _layout(obj: dict) -> Callable[[dict, _Checker], _Converted] | None:
    """The converter for `obj`, chosen from its fields; None when no layout fits."""
    if "requested_rewrite" in obj:
        return _rome
    if "target" in obj:
        return _native
    if "target_new" in obj or ("prompt" in obj and any(k in obj for k in _COUNTERFACT_MARKS)):
        return _counterfact
    if "src" in obj or "alt" in obj:
        return _zsre
    if "prompt" in obj:
        return _native
    return None


def to_edit_record(obj: dict, *, where: str, default_id: str, problems: list[str]) -> EditRecord | None:
    """Convert one parsed JSON object to an EditRecord, whatever its layout.

    `where` ("file:line") prefixes every problem, which is appended to `problems` (all of them, not
    only the first); the result is None when there was any. `where` also becomes ``record.source``;
    `default_id` is used when the record has neither ``id`` nor ``case_id``.
    """
    c = _Checker(where, problems)
    convert = _layout(obj)
    if convert is None:
        c.bad("prompt", _UNRECOGNISED)
        return None
    before = len(problems)
    record_id = c.record_id(obj, default_id)
    fields, consumed = convert(obj, c)
    if len(problems) > before or record_id is None:
        return None
    extra = {k: v for k, v in obj.items() if k not in consumed}
    return EditRecord(id=record_id, source=where, extra=extra, **fields)
