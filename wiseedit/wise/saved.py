"""Which edits each saved WISE memory holds: positions in the delta's edit log, not copies of texts.

A memory keeps its edits' prompts (a merge re-thresholds on them, WISE-Retrieve replays them) and a
shard its targets (rehearsal trains them again). The delta's ``edits.jsonl`` already holds both, so
the saved state records each memory's edits as ``"edits": [start, stop]``: the 0-based positions
``start`` to ``stop - 1`` of the log (``seq`` ``start + 1`` to ``stop``). The memories always hold
consecutive runs of the edits in order (merged memories, then the pending shards, then the current
one), which :func:`memory_texts` checks when it reads the texts back.

A state saved before this (``state_version`` 1, deltas of format 1 and 2) carries each memory's
``prompts`` and ``targets`` in its entry; they are read from there.
"""

from __future__ import annotations

from pathlib import Path

from wiseedit.artifacts.reading import EDITS_FILE
from wiseedit.errors import BadInputError
from wiseedit.methods.base import MethodState


def edit_ranges(counts: list[int]) -> list[list[int]]:
    """``[start, stop]`` of each of the memories holding ``counts[i]`` edits, in order."""
    ranges, start = [], 0
    for count in counts:
        ranges.append([start, start + count])
        start += count
    return ranges


def memory_texts(entries: list[dict], state: MethodState, num_edits: int) -> list[tuple[list[str], list[str]]]:
    """``(prompts, targets)`` of each saved memory entry, in the order given (merged, pending, current),
    read from the state's edit log, or from the entries of a state saved before that. A log that does
    not fit the state (another number of edits, ranges that do not cover it in order) is refused in one
    sentence."""
    if not any("edits" in entry for entry in entries):  # state_version 1: the texts are in the entries
        return [(list(entry["prompts"]), list(entry.get("targets", []))) for entry in entries]
    where = f"the WISE state of {state.folder}" if state.folder is not None else "this WISE state"
    log = str(Path(state.folder) / EDITS_FILE) if state.folder is not None else "its edit log"
    if state.edits is None:
        raise BadInputError(f"{where} names its edits by position in {log}: restore it with the delta's edits "
                            "(MethodState.edits), as wiseedit.load_edited does")
    if len(state.edits) != num_edits:
        raise BadInputError(f"{log} holds {len(state.edits)} edits but {where} was saved after {num_edits}; "
                            "the delta is damaged")
    ranges = [entry.get("edits") for entry in entries]
    counts = [r[1] - r[0] if _is_range(r) else -1 for r in ranges]
    if min(counts, default=0) < 0 or ranges != edit_ranges(counts) or sum(counts) != num_edits:
        raise BadInputError(f"{where} gives its memories the edits {ranges} of {log}, which should cover its "
                            f"{num_edits} edits in order; the delta is damaged")
    return [([e.prompt for e in state.edits[a:b]], [e.target for e in state.edits[a:b]]) for a, b in ranges]


def _is_range(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
