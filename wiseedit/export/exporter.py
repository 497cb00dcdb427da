"""``export_model``: turn a base model plus a delta into one folder that can be shared.

Two forms (see :mod:`wiseedit.export.selfcontained` and :mod:`wiseedit.export.merged`). Either way the
delta and the output location are checked before the model is loaded, the figures are measured before
anything is written, and the folder appears complete or not at all (``atomic_directory``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from wiseedit.artifacts import (CONFIG_FILE, Delta, atomic_directory, atomic_write_text, backup_path, check_delta_base,
                                load_delta)
from wiseedit.artifacts.atomic import interrupted_write_message
from wiseedit.artifacts.location import check_writable
from wiseedit.artifacts.lock import writing
from wiseedit.errors import BadInputError, WiseEditError
from wiseedit.export import measure
from wiseedit.export.card import CardFacts, model_card
from wiseedit.artifacts.exported import DELTA_SUBDIR, MERGED_EDITS_FILE, PROVENANCE_FILE
from wiseedit.export.merged import LocalityTooLow, bake, check_mergeable, consolidated_delta
from wiseedit.export.selfcontained import add_remote_code, copy_delta, remove_remote_code
from wiseedit.models import DType, LoadedModel, ModelSource, base_fingerprint, get_module, load_base, resolve_model
from wiseedit.models.quiet import no_progress_bars
from wiseedit.recipe.checkpoint import bundle_checkpoint
from wiseedit.session import LogFn, attach, base_name

ExportForm = Literal["self-contained", "merged"]
EXPORT_VERSION = 1  # layout version of wiseedit_export.json
DEFAULT_MIN_LOC = 0.95
_STORED_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ExportResult:
    """What :func:`export_model` wrote: the folder, its form, the figures measured, the provenance."""

    path: Path
    form: ExportForm
    delta: Delta
    metrics: measure.ExportMetrics
    provenance: dict

    def to_json(self) -> dict:
        return {"written": True, "path": str(self.path), "form": self.form, "method": self.delta.method,
                "edits": self.delta.num_edits, "metrics": self.metrics.to_json(),
                "provenance": self.provenance}


def export_model(model: str | None, delta: str | Path, out: str | Path, *, merged: bool = False,
                 force: bool = False, min_loc: float = DEFAULT_MIN_LOC, device: str = "auto",
                 dtype: DType = "auto", log: LogFn | None = None) -> ExportResult:
    """Export base `model` with `delta` applied to the folder `out`.

    Self-contained (default): the base weights (``save_pretrained``, safetensors), tokenizer and config,
    the delta copied to ``out/wiseedit_delta``, a modeling file for ``trust_remote_code`` loading.
    `merged`: a WISE delta's memories consolidated into one and baked into the edited module's weight,
    saved as a plain checkpoint; refused (:class:`~wiseedit.export.merged.LocalityTooLow`, exit 1,
    nothing written) when the merged model's Loc is below `min_loc`, unless `force`.

    Both forms get ``wiseedit_export.json`` (provenance and the figures measured), the edit log and a
    ``README.md`` model card. `model` defaults to the base the delta records; `dtype` "auto" keeps the
    checkpoint's own dtype, so the export has the base's size and values. An existing `out` is
    replaced only with `force`, and only if it is empty or an earlier export.
    """
    saved = load_delta(Path(delta))
    if saved.num_edits == 0:
        raise BadInputError(f"delta {saved.path} holds no edits: there is nothing to export")
    if merged:
        check_mergeable(saved.method)
    if not (isinstance(min_loc, (int, float)) and math.isfinite(min_loc) and 0 <= min_loc <= 1):
        raise BadInputError(f"min_loc should be a number from 0 to 1 (a Loc), not {min_loc!r}",
                            cli=f"--min-loc should be a number from 0 to 1 (a Loc), not {min_loc!r}")
    form: ExportForm = "merged" if merged else "self-contained"
    name = model if model is not None else saved.config["base_model_name_or_path"]
    source = resolve_model(name)
    out = Path(out)
    _check_out(out, force, protect=[source.path, Path(saved.path)])

    if log:
        log(f"loading model {name}")
    base = load_base(name, device=device, dtype=_export_dtype(source, dtype))
    check_delta_base(saved, base.fingerprint, base.source.name, base.model)
    metrics, merge_note = _edit_and_measure(base, saved, merged, log)
    below = metrics.merged is not None and metrics.merged.loc < min_loc
    if below and not force:
        low = f"the merged model's Loc is {metrics.merged.loc:.3f}, below"
        routed = f"(routed: {metrics.routed.loc:.3f}); nothing was written: export self-contained"
        raise LocalityTooLow(
            f"{low} min_loc {min_loc:g} {routed} (merged=False), or pass force=True to write it anyway", metrics,
            cli=f"{low} --min-loc {min_loc:g} {routed} (drop --merged), or pass --force to write it anyway")

    provenance = _provenance(form, base, saved, metrics, merge_note, min_loc if merged else None, below)
    if log:
        log(f"writing {out}")
    # the lock: two exports to one folder take turns, and what a killed one left there is removed
    with writing(out, log=log), atomic_directory(out, overwrite=force) as tmp:
        with no_progress_bars():  # transformers' "Writing model shards" bar would litter stderr
            base.model.save_pretrained(tmp)
        _save_tokenizer(base.source, tmp)
        if merged:
            atomic_write_text(tmp / MERGED_EDITS_FILE, saved.edits_text)
            remove_remote_code(tmp)
        else:
            copied = copy_delta(saved, tmp)
            if saved.method == "recipe":  # its networks live in a checkpoint outside the delta: carry it
                bundle_checkpoint(copied, CONFIG_FILE, origin=Path(saved.path))
            add_remote_code(tmp)
        atomic_write_text(tmp / PROVENANCE_FILE, json.dumps(provenance, indent=2, ensure_ascii=False) + "\n")
        card = _card_facts(out.name, provenance, saved, metrics, base.source.hub_id)
        atomic_write_text(tmp / "README.md", model_card(card))
    return ExportResult(out, form, saved, metrics, provenance)


# -- before loading ------------------------------------------------------------------------------------


def _check_out(out: Path, force: bool, protect: list[Path]) -> None:
    """Refuse now, before the model is loaded, to write where the export must not or could not go."""
    if not out.exists() and backup_path(out).exists():
        raise BadInputError(interrupted_write_message(out))
    target = out.expanduser().resolve()
    for kept in protect:
        kept = kept.expanduser().resolve()
        if target == kept or target in kept.parents:
            raise BadInputError(f"out {out} would replace {kept}, which the export reads: give another out",
                                cli=f"--out {out} would replace {kept}, which the export reads: pass another path")
    check_writable(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise BadInputError(f"{out} exists and is not a directory: give another out",
                            cli=f"{out} exists and is not a directory: pass --out with another path")
    if not force:
        raise BadInputError(f"{out} already exists: pass force=True to replace it, or another out",
                            cli=f"{out} already exists: pass --force to replace it, or --out with another path")
    if not (out / PROVENANCE_FILE).is_file() and any(out.iterdir()):
        not_export = f"{out} is a non-empty folder that is not a wiseedit export; refusing to replace it"
        raise BadInputError(f"{not_export} even with force=True: give another out",
                            cli=f"{not_export} even with --force: pass --out with another path")


def _export_dtype(source: ModelSource, dtype: DType) -> DType:
    """``auto``: the dtype the checkpoint is stored in (config.json), else float32."""
    if dtype != "auto":
        return dtype
    try:
        raw = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    stored = raw.get("dtype") or raw.get("torch_dtype")
    return stored if stored in _STORED_DTYPES else "float32"


# -- with the model loaded -----------------------------------------------------------------------------


def _edit_and_measure(base: LoadedModel, saved: Delta, merged: bool,
                      log: LogFn | None) -> tuple[measure.ExportMetrics, dict | None]:
    """Measure the routed model; with `merged`, bake the consolidated delta into `base.model` and
    measure that too. Leaves `base.model` holding exactly the weights to write, with no method attached."""
    probes = measure.probes_from_log(saved.edits_log)
    if log:
        log(f"measuring on {len(probes.edits)} edit(s) and {len(probes.locality)} locality probe(s)")
    reference = measure.base_predictions(base.model, base.tokenizer, probes)
    method = attach(base, saved)
    routed = measure.rel_and_loc(base.model, base.tokenizer, probes, reference, method=method)
    merge_note, merged_figures = None, None
    if merged:
        if log:
            log(f"merging the {saved.method} memories into {method.module_path}")
        merged_delta, merge_note = consolidated_delta(method)
        _detach(base, method)
        bake(get_module(base.model, method.module_path), merged_delta)
        merged_figures = measure.rel_and_loc(base.model, base.tokenizer, probes, reference)
    else:
        _detach(base, method)
        if base_fingerprint(base.model) != base.fingerprint:
            raise WiseEditError("the base weights changed while the delta was attached; nothing was written")
    metrics = measure.ExportMetrics(routed, merged_figures, len(probes.edits), len(probes.locality),
                                    probes.source)
    return metrics, merge_note


def _detach(base: LoadedModel, method) -> None:
    method.detach()
    base.model.wiseedit = None


def _save_tokenizer(source: ModelSource, folder: Path) -> None:
    """The base's tokenizer as it is on disk (not the loaded one, whose pad token wiseedit may have set)."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source.path, local_files_only=True).save_pretrained(folder)


def _provenance(form: ExportForm, base: LoadedModel, saved: Delta, metrics: measure.ExportMetrics,
                merge_note: dict | None, min_loc: float | None, forced: bool) -> dict:
    from wiseedit import __version__

    config = saved.config
    record = {
        "export_version": EXPORT_VERSION,
        "form": form,
        "base_model_name_or_path": base_name(base.source),
        "base_revision": base.source.revision,
        "base_fingerprint": base.fingerprint,
        "weights_fingerprint": base_fingerprint(base.model),  # of the weights written: base or merged
        "dtype": str(next(base.model.parameters()).dtype).removeprefix("torch."),
        "method": saved.method,
        "edited_module": config.get("edited_module"),
        "num_edits": saved.num_edits,
        "delta": {"path": str(Path(saved.path).resolve()), "created": config.get("created"),
                  "updated": config.get("updated"), "format_version": config.get("format_version")},
        "edits_log": f"{DELTA_SUBDIR}/edits.jsonl" if form == "self-contained" else MERGED_EDITS_FILE,
        "metrics": metrics.to_json(),
        "wiseedit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if form == "merged":
        record["merge"] = merge_note
        record["min_loc"] = min_loc
        record["forced"] = forced
    return record


def _card_facts(name: str, provenance: dict, saved: Delta, metrics: measure.ExportMetrics,
                hub_id: str | None) -> CardFacts:
    return CardFacts(
        name=name, form=provenance["form"], base=provenance["base_model_name_or_path"], hub_id=hub_id,
        base_fingerprint=provenance["base_fingerprint"], method=saved.method,
        edited_module=provenance["edited_module"], edits=saved.edits_log, metrics=metrics,
        min_loc=provenance.get("min_loc"), forced=provenance.get("forced", False),
        version=provenance["wiseedit_version"], created=provenance["created"])

