"""EasyEdit's KnowEdit benchmark layouts (ZsRE, WikiData_counterfact, WikiData_recent, WikiBio,
Sanitation; ConvSent is refused).

- ZsRE / WikiData_counterfact / WikiData_recent: ``subject``, ``prompt``, ``target_new``,
  ``ground_truth`` (the old answer: kept in `extra`), ZsRE's ``rephrase_prompt`` and ``cond``;
  ``portability`` and ``locality`` are objects of probe lists by kind (``Reasoning``,
  ``Logical_Generalization``, ``Subject_Aliasing``; ``Relation_Specificity``, ``Forgetfulness``), each
  probe ``{"prompt", "ground_truth"}``. Every probe is read, its kind kept in ``probe.kind``.
- WikiBio: ``text`` (the prompt), ``labels`` (the target: the passage's next sentence), ``concept``
  (the subject), ``locality`` as above.
- Sanitation (``trivia_qa_*.json``): one JSON object, not a list: ``success`` (``K_F`` in the train
  file) holds the edits ``{"question", "target_new", "ground_truth"}`` (question -> target_new, e.g.
  "I don't know."), ``locality`` (``K_R``) the questions whose ``ground_truth`` must survive; locality
  question j becomes a probe of edit ``j % len(edits)``, as suites pair their pools.
- ConvSent (``blender_*.json``, records ``ent``, ``pos``, ``neg``) edits a chatbot's sentiment about a
  topic and is scored by a sentiment classifier: there is no prompt/target pair to teach, so a file of
  it is refused in one sentence.

A ``ground_truth`` is a string, a list of aliases, or a list of answers each a list of aliases
(``[["Kai Wegner", "Kai Peter Wegner"]]``); the first alias of the first answer is the one scored, as
EasyEdit's runner does (token-level metrics score one answer).
"""

from __future__ import annotations

from typing import Any

from wiseedit.edits.checker import Checker, json_kind
from wiseedit.edits.record import LocalityProbe, PortabilityProbe

#: Top-level keys of a Sanitation file: (edits, locality questions), test then train names.
SANITATION_KEYS = (("success", "locality"), ("K_F", "K_R"))

_Converted = tuple[dict, set]


def is_kinded(value: Any) -> bool:
    """KnowEdit's probes: an object whose values are all lists (``{"Reasoning": [...], ...}``); ZsRE's
    ``portability`` object (``New Question``/``New Answer`` strings) is not."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, list) for v in value.values())


def is_knowedit(obj: dict) -> bool:
    """A KnowEdit ZsRE / WikiData / WikiBio record (see the module docstring)."""
    if "text" in obj and "labels" in obj:
        return True
    return "target_new" in obj and (is_kinded(obj.get("locality")) or is_kinded(obj.get("portability")))


def is_convsent(obj: Any) -> bool:
    """A ConvSent record: a topic (``ent``) with positive / negative replies and no prompt."""
    return isinstance(obj, dict) and "ent" in obj and ("pos" in obj or "neg" in obj) and "prompt" not in obj


def convsent_refusal(where: str) -> str:
    return (f"{where}: this is a ConvSent file (records with ent, pos, neg), which edits a chatbot's "
            "sentiment about a topic and is scored by a sentiment classifier: it has no prompt/target pair "
            "to teach, so wiseedit does not read it")


def sanitation_lists(obj: Any) -> tuple[str, str] | None:
    """The (edits, locality) keys when `obj` is a Sanitation file's top-level object, else None."""
    if isinstance(obj, dict):
        for edits, locality in SANITATION_KEYS:
            if isinstance(obj.get(edits), list):
                return edits, locality
    return None


def first_answer(value: Any, path: str, c: Checker) -> str | None:
    """The scored answer of a ``ground_truth`` (see the module docstring); None after a problem."""
    if value is None:
        c.bad(path, "missing")
        return None
    while isinstance(value, list):
        if not value:
            c.bad(path, "empty list: expected an answer")
            return None
        value, path = value[0], f"{path}[0]"
    return c.string(value, path)


def kinded_probes(obj: dict, key: str, cls: type, c: Checker) -> tuple:
    """Every probe of a KnowEdit ``locality`` / ``portability`` object, in file order, kind kept."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict):
        c.bad(key, f"expected an object of probe lists ({{kind: [{{prompt, ground_truth}}, ...]}}), "
                   f"got {json_kind(value)}")
        return ()
    out = []
    for kind, items in value.items():
        if not isinstance(items, list):
            c.bad(f"{key}.{kind}", f"expected a list of {{prompt, ground_truth}} objects, got {json_kind(items)}")
            continue
        for i, item in enumerate(items):
            path = f"{key}.{kind}[{i}]"
            if not isinstance(item, dict):
                c.bad(path, f"expected a {{prompt, ground_truth}} object, got {json_kind(item)}")
                continue
            raw = item.get("prompt")
            if raw is None:
                c.bad(f"{path}.prompt", "missing")
                raw = []
            # a list of prompts (some WikiData_recent probes) shares the probe's answer
            prompts = [c.string(p, f"{path}.prompt") for p in (raw if isinstance(raw, list) else [raw])]
            answer = first_answer(item.get("ground_truth"), f"{path}.ground_truth", c)
            if prompts and None not in prompts and answer is not None:
                out += [cls(p, answer, kind) for p in prompts]
    return tuple(out)


def knowedit(obj: dict, c: Checker) -> _Converted:
    """A KnowEdit ZsRE / WikiData / WikiBio record (WikiBio names its fields text / labels / concept)."""
    wikibio = "target_new" not in obj
    prompt, target, subject = ("text", "labels", "concept") if wikibio else ("prompt", "target_new", "subject")
    fields = dict(
        prompt=c.field(obj, prompt, required=True),
        target=c.field(obj, target, required=True),
        subject=c.field(obj, subject),
        rephrase=c.strings(obj, "rephrase_prompt"),
        locality=kinded_probes(obj, "locality", LocalityProbe, c),
        portability=kinded_probes(obj, "portability", PortabilityProbe, c),
    )
    return fields, {"id", prompt, target, subject, "rephrase_prompt", "locality", "portability"}


#: Fields of a KnowEdit record kept in `extra` without a warning.
KNOWEDIT_EXTRAS = frozenset({"ground_truth", "cond", "case_id"})


def is_sanitation(obj: dict) -> bool:
    """A Sanitation edit item: a ``question`` (not a ``prompt``) to answer with ``target_new``."""
    return "question" in obj and "prompt" not in obj


def sanitation(obj: dict, c: Checker) -> _Converted:
    """A Sanitation edit item: question -> target_new (its old ``ground_truth`` stays in `extra`)."""
    fields = dict(prompt=c.field(obj, "question", required=True), target=c.field(obj, "target_new", required=True),
                  subject=c.field(obj, "subject"))
    return fields, {"id", "question", "target_new", "subject"}


#: Fields of a Sanitation item kept in `extra` without a warning.
SANITATION_EXTRAS = frozenset({"ground_truth"})


def sanitation_probe(item: Any, where: str, problems: list[str]) -> LocalityProbe | None:
    """A Sanitation locality item (``question``, ``ground_truth``) as a probe; None after a problem."""
    c = Checker(where, problems)
    if not isinstance(item, dict):
        c.bad("locality", f"expected a {{question, ground_truth}} object, got {json_kind(item)}")
        return None
    question = c.field(item, "question", required=True)
    answer = first_answer(item.get("ground_truth"), "ground_truth", c)
    return LocalityProbe(question, answer) if question is not None and answer is not None else None
