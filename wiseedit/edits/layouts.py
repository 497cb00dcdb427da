"""Turning one parsed JSON object into an EditRecord, whichever dataset layout it follows.

The layout is detected per record from its fields (files are sometimes concatenated):

- native: ``prompt``, ``target`` (required), ``id``, ``subject``, ``rephrase`` (str or list of str),
  ``locality`` and ``portability`` (lists of ``{"prompt", "answer"}``, each with an optional ``kind``),
  ``irrelevant``.
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
- KnowEdit (EasyEdit's benchmark: ZsRE, WikiData_counterfact, WikiData_recent, WikiBio): see
  :mod:`wiseedit.edits.knowedit`; its ``locality`` / ``portability`` objects of probe lists by kind
  are what tell it from the flattened CounterFact layout; Sanitation's items (``question``,
  ``target_new``) too.

Every field not consumed is kept in ``EditRecord.extra`` (e.g. ZsRE ``answers``, CounterFact
``ground_truth`` and ``case_id``). Fields a layout neither reads nor is known to carry (a typo such as
``rephase``) are reported to the caller (`unknown`), which warns. The id is ``id`` (string or
integer), else ``case_id``, else the caller's default.
"""

from __future__ import annotations

from typing import Callable

import wiseedit.edits.knowedit as knowedit
from wiseedit.edits.checker import ID_KEYS, Checker, json_kind
from wiseedit.edits.record import EditRecord, LocalityProbe, PortabilityProbe

__all__ = ["ID_KEYS", "json_kind", "to_edit_record"]

# Fields that mark a record as CounterFact-like even when its `target_new` is missing.
_COUNTERFACT_MARKS = ("rephrase_prompt", "locality_prompt", "locality_ground_truth", "ood_rephrase")

_UNRECOGNISED = (
    "missing (expected a native record with prompt/target, a ZsRE record with src/alt, "
    "a CounterFact or KnowEdit record with prompt/target_new, or a WikiBio record with text/labels)"
)


# Each converter returns the EditRecord fields it read (None where a required one was bad) and the
# keys it consumed; whatever else the record holds goes to `extra`.
_Converted = tuple[dict, set]


def _native(obj: dict, c: Checker) -> _Converted:
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


def _zsre_portability(obj: dict, c: Checker) -> tuple[PortabilityProbe, ...]:
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


def _zsre(obj: dict, c: Checker) -> _Converted:
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


def _counterfact(obj: dict, c: Checker) -> _Converted:
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


def _rome(obj: dict, c: Checker) -> _Converted:
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


def _layout(obj: dict) -> Callable[[dict, Checker], _Converted] | None:
    """The converter for `obj`, chosen from its fields; None when no layout fits."""
    if "requested_rewrite" in obj:
        return _rome
    if "target" in obj:
        return _native
    if knowedit.is_knowedit(obj):
        return knowedit.knowedit
    if knowedit.is_sanitation(obj):
        return knowedit.sanitation
    if "target_new" in obj or ("prompt" in obj and any(k in obj for k in _COUNTERFACT_MARKS)):
        return _counterfact
    if "src" in obj or "alt" in obj:
        return _zsre
    if "prompt" in obj:
        return _native
    return None


# Fields each layout carries beyond those it reads: kept in `extra` without a warning (the shipped
# files and the public datasets hold them; the temporal suite reads `ood_rephrase` from `extra`).
_KNOWN_EXTRAS = {
    _native: frozenset({"ground_truth", "ood_rephrase", "case_id"}),
    _zsre: frozenset({"pred", "answers", "cond", "case_id"}),
    _counterfact: frozenset({"case_id", "ground_truth", "ood_rephrase", "locality_prompt",
                             "locality_ground_truth", "target_true", "pararel_idx"}),
    _rome: frozenset({"case_id", "pararel_idx", "requested_rewrite", "attribute_prompts", "generation_prompts"}),
    knowedit.knowedit: knowedit.KNOWEDIT_EXTRAS,
    knowedit.sanitation: knowedit.SANITATION_EXTRAS,
}


def to_edit_record(obj: dict, *, where: str, default_id: str, problems: list[str],
                   unknown: list[str] | None = None) -> EditRecord | None:
    """Convert one parsed JSON object to an EditRecord, whatever its layout.

    `where` ("file:line") prefixes every problem, which is appended to `problems` (all of them, not
    only the first); the result is None when there was any. `where` also becomes ``record.source``;
    `default_id` is used when the record has neither ``id`` nor ``case_id``. The names of fields the
    layout does not know are appended to `unknown` when it is given (they are kept in `extra`).
    """
    c = Checker(where, problems)
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
    if unknown is not None:
        unknown += [k for k in extra if k not in _KNOWN_EXTRAS[convert]]
    return EditRecord(id=record_id, source=where, extra=extra, **fields)
