"""Reading an edit file (JSONL, or a JSON array as ZsRE and CounterFact ship) into EditRecords.

Every problem in the file is reported at once, each as ``file:line: field: what is wrong``, in one
InputProblems; the line of a record in a JSON array is the line where its object starts. Records
without an ``id`` (or ``case_id``) get ``"<file stem>:<line>"`` (``"stdin:<line>"`` for standard
input): stable as long as the file is not re-formatted.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from wiseedit.edits.layouts import ID_KEYS, json_kind, to_edit_record
from wiseedit.edits.record import EditRecord
from wiseedit.errors import BadInputError, InputProblems

STDIN_NAME = "<stdin>"

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, nothing more
_BOM = b"\xef\xbb\xbf"


def read_edits(source: str | Path, *, stdin: TextIO | None = None) -> list[EditRecord]:
    """Read and validate the edits in `source`, in file order.

    `source` is a path to a JSONL file or a JSON array of objects, or ``"-"`` for standard input
    (`stdin` when given, else ``sys.stdin``). Raises BadInputError when the file cannot be read and
    InputProblems listing every problem when any record is invalid (nothing is returned then).
    """
    name, data = _load(source, stdin)
    problems: list[str] = []
    text = data if isinstance(data, str) else _decode(data, name, problems)
    start = _WHITESPACE.match(text).end()
    if text.startswith("[", start):
        entries = _parse_array(text, start, name, problems)
    else:
        entries = _parse_lines(text, name, problems)

    stem = "stdin" if name == STDIN_NAME else Path(name).stem
    records, first_line = [], {}
    for line, obj in entries:
        where = f"{name}:{line}"
        if not isinstance(obj, dict):
            problems.append(f"{where}: record: expected a JSON object, got {json_kind(obj)}")
            continue
        record = to_edit_record(obj, where=where, default_id=f"{stem}:{line}", problems=problems)
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
    if problems:
        raise InputProblems(problems)
    return records


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
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _parse_array(text: str, start: int, name: str, problems: list[str]) -> list[tuple[int, Any]]:
    """A JSON array starting at `start`; returns (line where each element starts, element) pairs.

    Decoding element by element (raw_decode) is what gives each record its line; a syntax error stops
    the parse, since nothing after it can be located reliably.
    """
    decoder = json.JSONDecoder()
    entries = []
    pos = _WHITESPACE.match(text, start + 1).end()
    line, counted = 1, 0  # newlines are counted incrementally: the files have 10k records
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                problems.append(f"{name}:{e.lineno}: json: {e.msg} (column {e.colno})")
                return entries
            entries.append((line, value))
            pos = _WHITESPACE.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WHITESPACE.match(text, pos + 1).end()
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                problems.append(_syntax_error(text, pos, "Expecting ',' or ']'", name))
                return entries
    pos = _WHITESPACE.match(text, pos).end()
    if pos < len(text):
        problems.append(_syntax_error(text, pos, "Extra data after the array", name))
    return entries


def _syntax_error(text: str, pos: int, msg: str, name: str) -> str:
    e = json.JSONDecodeError(msg, text, pos)  # computes line and column as the decoder's own do
    return f"{name}:{e.lineno}: json: {e.msg} (column {e.colno})"

