"""The in-memory form of one edit, whatever file layout it was read from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class LocalityProbe:
    """An unrelated prompt whose prediction must not change, with its reference answer; `kind` names
    the probe's family where the dataset has several (KnowEdit: Relation_Specificity, Forgetfulness)."""

    prompt: str
    answer: str
    kind: str | None = None


@dataclass(frozen=True)
class PortabilityProbe:
    """A derived (e.g. multi-hop) question whose answer should follow from the edit; `kind` names its
    family where the dataset has several (KnowEdit: Reasoning, Logical_Generalization, Subject_Aliasing)."""

    prompt: str
    answer: str
    kind: str | None = None


@dataclass(frozen=True)
class EditRecord:
    """One fact to teach the model: `prompt` should be completed by `target`.

    `rephrase` are paraphrases of `prompt` (generalisation), `locality` unrelated probes, `irrelevant`
    an unrelated text used by WISE's routing loss, `source` the "file:line" it was read from.
    """

    prompt: str
    target: str
    id: str
    subject: str | None = None
    rephrase: tuple[str, ...] = ()
    locality: tuple[LocalityProbe, ...] = ()
    portability: tuple[PortabilityProbe, ...] = ()
    irrelevant: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # layout-specific fields kept for eval

    def to_json(self) -> dict:
        """The native JSONL form (what ``edits.jsonl`` audit logs store)."""
        out = {"id": self.id, "prompt": self.prompt, "target": self.target}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.rephrase:
            out["rephrase"] = list(self.rephrase)
        if self.locality:
            out["locality"] = [_probe_json(p) for p in self.locality]
        if self.portability:
            out["portability"] = [_probe_json(p) for p in self.portability]
        if self.irrelevant is not None:
            out["irrelevant"] = self.irrelevant
        return out


def _probe_json(probe: LocalityProbe | PortabilityProbe) -> dict:
    """``{"prompt", "answer"}``, plus ``"kind"`` when the probe has one (so unkinded logs stay as before)."""
    out = asdict(probe)
    if out["kind"] is None:
        del out["kind"]
    return out
