"""Reading an edit file (JSONL, or a JSON array as ZsRE and CounterFact ship, or KnowEdit's Sanitation
object) into EditRecords.

Every problem in the file is reported at once, each as ``file:line: field: what is wrong``, in one
InputProblems; the line of a record in a JSON array is the line where its object starts. Records
without an ``id`` (or ``case_id``) get ``"<file stem>:<line>"`` in JSONL (``"stdin:<line>"`` for
standard input) and ``"<file stem>:<n>"`` in a JSON array, n counting its records from 1 (a one-line
array gives every record an id of its own). A file of a layout wiseedit does not read (ConvSent) is
refused in one sentence; fields no layout knows (a typo such as ``rephase``) get one
:class:`~wiseedit.errors.EditFileWarning` per file that names them and the line of their first use.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import wiseedit.edits.knowedit as knowedit
from wiseedit.edits.checker import ID_KEYS, json_kind
from wiseedit.edits.layouts import to_edit_record
from wiseedit.edits.record import EditRecord, LocalityProbe
from wiseedit.errors import BadInputError, EditFileWarning, InputProblems

STDIN_NAME = "<stdin>"

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, nothing more
_BOM = b"\xef\xbb\xbf"


def read_edits(source: str | Path, *, stdin: TextIO | None = None) -> list[EditRecord]:
    """Read and validate the edits in `source`, in file order.

    `source` is a path to a JSONL file, a JSON array of objects or a Sanitation object, or ``"-"`` for
    standard input (`stdin` when given, else ``sys.stdin``). Raises BadInputError when the file cannot
    be read or is of a layout wiseedit refuses, and InputProblems listing every problem when any record
    is invalid (nothing is returned then). Unknown fields are warned about (EditFileWarning), not refused.
    """
    name, data = _load(source, stdin)
    problems: list[str] = []
    text = data if isinstance(data, str) else _decode(data, name, problems)
    start = _WHITESPACE.match(text).end()
    locality: list[tuple[int, Any]] = []  # Sanitation's locality questions, (line, item)
    if text.startswith("[", start):
        entries, _ = _parse_array(text, start, name, problems)
        numbered = True
    elif text.startswith("{", start) and (lists := knowedit.sanitation_lists(_one_object(text))):
        entries, locality = _parse_sanitation(text, start, lists, name, problems)
        numbered = True
    else:
        entries, numbered = _parse_lines(text, name, problems), False

    stem = "stdin" if name == STDIN_NAME else Path(name).stem
    records, first_line, unknown_at = [], {}, {}
    for number, (line, obj) in enumerate(entries, start=1):
        where = f"{name}:{line}"
        if knowedit.is_convsent(obj):
            raise BadInputError(knowedit.convsent_refusal(where))
        if not isinstance(obj, dict):
            problems.append(f"{where}: record: expected a JSON object, got {json_kind(obj)}")
            continue
        unknown: list[str] = []
        record = to_edit_record(obj, where=where, default_id=f"{stem}:{number if numbered else line}",
                                problems=problems, unknown=unknown)
        for key in unknown:
            unknown_at.setdefault(key, line)
        if record is None:
            continue
        if record.id in first_line:
            key = next((k for k in ID_KEYS if obj.get(k) is not None), "id")
            first = first_line[record.id]
            problems.append(f"{where}: {key}: duplicate id {record.id!r} (first at line {first})")
        else:
            first_line[record.id] = line
        records.append(record)
    if not entries and not problems:
        problems.append(f"{name}:1: edits: no edits found")
    probes = [knowedit.sanitation_probe(item, f"{name}:{line}", problems) for line, item in locality]
    if problems:
        raise InputProblems(problems)
    if probes:
        records = _with_locality(records, probes)
    if unknown_at:
        warnings.warn(_unknown_message(name, unknown_at), EditFileWarning, stacklevel=2)
    return records


def _unknown_message(name: str, unknown_at: dict[str, int]) -> str:
    first = min(unknown_at.values())
    fields = ", ".join(f"{key!r} (first at line {line})" for key, line in unknown_at.items())
    return (f"{name}:{first}: unknown field(s) {fields}: no layout reads them, so they are "
            "ignored; check their spelling")


def _with_locality(records: list[EditRecord], probes: list[LocalityProbe]) -> list[EditRecord]:
    """Sanitation: locality question j becomes a probe of edit ``j % len(records)``."""
    extra: list[list[LocalityProbe]] = [[] for _ in records]
    for j, probe in enumerate(probes):
        extra[j % len(records)].append(probe)
    return [replace(r, locality=r.locality + tuple(more)) if more else r for r, more in zip(records, extra)]


def _load(source: str | Path, stdin: TextIO | None) -> tuple[str, bytes | str]:
    """The name to report and the raw content (bytes when available, to locate bad UTF-8)."""
    if str(source) == "-":
        stream = stdin if stdin is not None else sys.stdin
        buffer = getattr(stream, "buffer", None)
        return STDIN_NAME, buffer.read() if buffer is not None else stream.read()
    name, path = str(source), Path(source)
    if path.is_dir():
        raise BadInputError(f"{name} is a directory, not an edit file (JSONL or a JSON array).")
    try:
        return name, path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"Edit file {name} does not exist.") from None
    except OSError as e:
        raise BadInputError(f"Cannot read edit file {name}: {e.strerror or e}.") from None


def _decode(data: bytes, name: str, problems: list[str]) -> str:
    """UTF-8 text of `data`; bad bytes are reported (the first one, by line) and replaced so the rest
    of the file is still checked."""
    if data.startswith(_BOM):  # some editors write one; it is not content
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        byte = data[e.start]
        problems.append(f"{name}:{line}: encoding: not valid UTF-8 (byte 0x{byte:02x} at column {column})")
        return data.decode("utf-8", errors="replace")


def _parse_lines(text: str, name: str, problems: list[str]) -> list[tuple[int, Any]]:
    """JSONL: one value per line, blank lines skipped; returns (line, value) pairs."""
    entries = []
    # split on "\n" only: str.splitlines also breaks on characters JSON strings may hold raw (U+2028)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            if not entries and _is_one_object(text):
                problems.append(
                    f"{name}:1: record: the file is a single JSON object spread over several lines; "
                    "expected one object per line (JSONL) or a JSON array of objects"
                )
                return []
            problems.append(f"{name}:{number}: json: {e.msg} (column {e.colno})")
    return entries


def _is_one_object(text: str) -> bool:
    return isinstance(_one_object(text), dict)


def _one_object(text: str) -> Any:
    """The file parsed as one JSON value (None when it is not valid JSON)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _parse_array(text: str, start: int, name: str, problems: list[str]) -> tuple[list[tuple[int, Any]], int]:
    """A top-level JSON array starting at `start`: (line, element) pairs and the end position; nothing
    but whitespace may follow it."""
    entries, pos = _array_items(text, start, name, problems)
    if pos is not None:
        pos = _WHITESPACE.match(text, pos).end()
        if pos < len(text):
            problems.append(_syntax_error(text, pos, "Extra data after the array", name))
    return entries, pos


def _array_items(text: str, start: int, name: str, problems: list[str]) -> tuple[list[tuple[int, Any]], int | None]:
    """A JSON array starting at `start`; returns (line where each element starts, element) pairs and the
    position after its ``]`` (None after a syntax error).

    Decoding element by element (raw_decode) is what gives each record its line; a syntax error stops
    the parse, since nothing after it can be located reliably.
    """
    decoder = json.JSONDecoder()
    entries = []
    pos = _WHITESPACE.match(text, start + 1).end()
    line, counted = 1, 0  # newlines are counted incrementally: the files have 10k records
    if text.startswith("]", pos):
        return entries, pos + 1
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            problems.append(f"{name}:{e.lineno}: json: {e.msg} (column {e.colno})")
            return entries, None
        entries.append((line, value))
        pos = _WHITESPACE.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()
        elif text.startswith("]", pos):
            return entries, pos + 1
        else:
            problems.append(_syntax_error(text, pos, "Expecting ',' or ']'", name))
            return entries, None


def _parse_sanitation(text: str, start: int, lists: tuple[str, str], name: str,
                      problems: list[str]) -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
    """KnowEdit's Sanitation object (valid JSON: checked by the caller): its edit items and its locality
    questions, each with the line where it starts."""
    decoder = json.JSONDecoder()
    found: dict[str, list[tuple[int, Any]]] = {}
    pos = _WHITESPACE.match(text, start + 1).end()
    while not text.startswith("}", pos):
        key, pos = decoder.raw_decode(text, pos)
        pos = _WHITESPACE.match(text, _WHITESPACE.match(text, pos).end() + 1).end()  # past the ':'
        if key in lists and text.startswith("[", pos):
            found[key], pos = _array_items(text, pos, name, problems)
        else:
            _, pos = decoder.raw_decode(text, pos)
        pos = _WHITESPACE.match(text, pos).end()
        if text.startswith(",", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()
    return found.get(lists[0], []), found.get(lists[1], [])


def _syntax_error(text: str, pos: int, msg: str, name: str) -> str:
    e = json.JSONDecodeError(msg, text, pos)  # computes line and column as the decoder's own do
    return f"{name}:{e.lineno}: json: {e.msg} (column {e.colno})"

