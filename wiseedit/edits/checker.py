"""Reading typed values out of one parsed record, collecting every problem with its location."""

from __future__ import annotations

from typing import Any

#: Fields an edit's id is read from, in order of preference.
ID_KEYS = ("id", "case_id")


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


class Checker:
    """Reads typed values out of one record, noting every problem (``where: path: what``) instead of
    stopping at the first, so a user fixes a whole file in one pass."""

    def __init__(self, where: str, problems: list[str]):
        # where: "file:line" of the record; problems: shared with the caller, appended to
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
        """A list of ``{"prompt", "answer"}`` objects (each with an optional ``kind``), as a tuple of
        `cls`."""
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
            kind = self.field(item, "kind", f"{key}[{i}].kind")
            if prompt is not None and answer is not None:
                out.append(cls(prompt, answer, kind))
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
