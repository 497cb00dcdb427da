"""``README.md`` of an exported folder: a Hugging Face model card saying what was edited, how it was
measured and how to load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from wiseedit.artifacts.exported import DELTA_SUBDIR, MERGED_EDITS_FILE
from wiseedit.export.measure import ExportMetrics

CARD_EDITS = 20  # edits listed in the card; the edit log has them all


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states."""

    name: str  # the exported folder's name
    form: str  # "self-contained" or "merged"
    base: str  # base_model_name_or_path
    hub_id: str | None  # the base's Hugging Face id, when it has one (front matter)
    base_fingerprint: str
    method: str
    edited_module: str | None
    edits: Sequence[dict]  # the edit log entries (prompt, target, ...)
    metrics: ExportMetrics
    min_loc: float | None  # merged form: the bar the merged Loc had to reach
    forced: bool  # merged form: written although Loc was below min_loc
    version: str
    created: str


def model_card(facts: CardFacts) -> str:
    """The card's Markdown, with YAML front matter for the Hugging Face Hub."""
    parts = [_front_matter(facts), _summary(facts), _edits(facts), _measured(facts), _loading(facts),
             _provenance(facts)]
    return "\n\n".join(parts) + "\n"


def _front_matter(f: CardFacts) -> str:
    lines = ["---", "library_name: transformers"]
    if f.hub_id:
        lines.append(f"base_model: {f.hub_id}")
    lines += ["tags:", "- wiseedit", "- knowledge-editing", f"- {f.method}", "---"]
    return "\n".join(lines)


def _summary(f: CardFacts) -> str:
    form = ("the unedited base weights with the edits kept apart as a wiseedit delta, routed at run time"
            if f.form == "self-contained" else
            "the edits merged into the weights of one module: a plain checkpoint, no router")
    module = f" in `{f.edited_module}`" if f.edited_module else ""
    return (f"# {_cell(f.name)}\n\n`{f.base}` taught {len(f.edits)} fact(s) with "
            f"[wiseedit](https://pypi.org/project/wiseedit/), method `{f.method}`{module}. "
            f"Exported {f.form}: {form}.")


def _edits(f: CardFacts) -> str:
    log = f"{DELTA_SUBDIR}/edits.jsonl" if f.form == "self-contained" else MERGED_EDITS_FILE
    shown = f.edits[:CARD_EDITS]
    head = (f"## What was edited\n\n{len(f.edits)} edit(s), in the order they were applied; the full log "
            f"(ids, rephrasings, locality probes) is `{log}`.")
    if len(f.edits) > CARD_EDITS:
        head += f" The first {CARD_EDITS}:"
    rows = ["| # | prompt | → target |", "| ---: | --- | --- |"]
    rows += [f"| {e.get('seq', i + 1)} | {_cell(e['prompt'])} | {_cell(e['target'])} |"
             for i, e in enumerate(shown)]
    return head + "\n\n" + "\n".join(rows)


def _measured(f: CardFacts) -> str:
    m = f.metrics
    probes = ("the edits' own locality probes" if m.probe_source == "edits"
              else "wiseedit's fixed neutral probe set (WISE's default irrelevant pool, which WISE also "
                   "trains its router to ignore: read the routed Loc as an upper bound)")
    rows = ["| model | Rel | Loc |", "| --- | ---: | ---: |",
            f"| routed (delta attached{', as exported' if f.form == 'self-contained' else ''}) "
            f"| {m.routed.rel:.3f} | {m.routed.loc:.3f} |"]
    if m.merged is not None:
        rows.append(f"| merged weights (this checkpoint) | {m.merged.rel:.3f} | {m.merged.loc:.3f} |")
    text = (f"## How it was measured\n\nTeacher-forced, at export time. **Rel**: share of target tokens "
            f"predicted (argmax) after each of the {m.num_edits} edit prompts. **Loc**: share of answer-token "
            f"predictions equal to the unedited base model's on {m.num_probes} prompts from {probes}.\n\n"
            + "\n".join(rows))
    if f.form == "merged" and f.min_loc is not None:
        verdict = ("it was below, and the export was forced (`--force`)" if f.forced
                   else "it passed")
        text += f"\n\nThe merged Loc had to reach {f.min_loc:g} to be written; {verdict}."
    return text


def _loading(f: CardFacts) -> str:
    path = f"./{f.name}"
    if f.form == "merged":
        return ("## How to load it\n\nA plain checkpoint: no wiseedit needed.\n\n```python\n"
                "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{path}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{path}")\n```\n\n'
                "Every input goes through the merged side memory (there is no router), so unrelated "
                "prompts may drift a little more than with the routed delta; see the Loc figures above.")
    return ("## How to load it\n\nWith wiseedit (`pip install wiseedit`):\n\n```python\nimport wiseedit\n\n"
            f'model = wiseedit.load("{path}")  # edited; model.wiseedit.summary() describes the edits\n```\n\n'
            "With transformers alone, running the modeling file shipped here (it imports wiseedit, which must "
            "be installed):\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{path}", trust_remote_code=True)\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{path}")\n```\n\n'
            "**Without `trust_remote_code=True` you get the unedited base model**: transformers uses its own "
            "class for this architecture and ignores the modeling file. Routing decides per input whether "
            "the edits apply, from the prompt, and keeps that decision while generating.")


def _provenance(f: CardFacts) -> str:
    return (f"## Provenance\n\n- base: `{f.base}` (weights `{f.base_fingerprint}`)\n"
            f"- exported by wiseedit {f.version} on {f.created}\n"
            "- machine-readable record: `wiseedit_export.json`")


def _cell(text: str) -> str:
    """`text` safe inside a Markdown table cell (and a heading): one line, no pipes, no HTML."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
