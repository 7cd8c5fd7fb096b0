"""Where a key of a pipeline file is written: its line number, for error messages.

``tomllib`` (stdlib) parses TOML but keeps no positions, and the TOML libraries that do
(tomlkit) keep them for round-trip editing, not as line numbers. The pipeline files are small
and use a handful of shapes (``[defaults]``, ``[[model]]``, ``[model.passes]``, ``key = value``,
dotted keys, inline tables, multi-line arrays and strings), so a line scanner is enough: it
records the line of every table header and of every key that starts a line. Stdlib only.

Tables are named by paths: ``("defaults",)``, ``("model", 0)`` for the first ``[[model]]``,
``("model", 0, "passes")`` for its ``[model.passes]`` (or ``passes.onnx = ...`` in it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TablePath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_KEY_PART = rf'(?:{_BARE}|"[^"]*"|\'[^\']*\')'
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY_PART)


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


@dataclass
class Lines:
    """Line numbers (1-based) of tables and keys in one TOML text."""

    headers: dict[TablePath, int] = field(default_factory=dict)
    keys: dict[tuple[TablePath, str], int] = field(default_factory=dict)

    def of(self, table: TablePath, key: str | None = None) -> int | None:
        """The line of ``key`` in ``table``; else of the table's header; else of the nearest
        enclosing table that has one (an inline table's keys: the line of the key that holds it)."""
        if key is not None and "." in key:  # passes.onnx: key onnx of the table passes
            *inner, key = key.split(".")
            table = (*table, *inner)
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if key is not None and (*table, key) in self.headers:  # a table: [key] or [[key]]
            return self.headers[(*table, key)]
        while table:
            if table in self.headers:
                return self.headers[table]
            parent, last = table[:-1], table[-1]
            if isinstance(last, str) and (parent, last) in self.keys:
                return self.keys[(parent, last)]
            table = parent
        return None


def scan(text: str) -> Lines:
    found = Lines()
    counts: dict[str, int] = {}  # array-of-tables name -> how many seen
    table: TablePath = ()
    depth = 0  # open brackets/braces of a multi-line value
    in_string: str | None = None  # the delimiter of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None or depth > 0:
            depth, in_string = _continue(line, depth, in_string)
            continue
        if m := _ARRAY_TABLE.match(line):
            parts = _parts(m.group(1))
            counts[parts[0]] = counts.get(parts[0], -1) + 1 if len(parts) == 1 else counts.get(parts[0], 0)
            table = _indexed(parts, counts)
            found.headers.setdefault(table, number)
            continue
        if m := _TABLE.match(line):
            table = _indexed(_parts(m.group(1)), counts)
            found.headers.setdefault(table, number)
            continue
        if m := _KEY.match(line):
            parts = _parts(m.group(1))
            for i in range(len(parts)):  # a.b.c = 1 writes key a, a.b and a.b.c on this line
                found.keys.setdefault(((*table, *parts[:i]), parts[i]), number)
            depth, in_string = _continue(line[m.end():], 0, None)
    return found


def _indexed(parts: list[str], counts: dict[str, int]) -> TablePath:
    """``model.passes`` inside the third ``[[model]]`` -> ("model", 2, "passes")."""
    head = parts[0]
    if head in counts:
        return (head, counts[head], *parts[1:])
    return tuple(parts)


def _continue(text: str, depth: int, in_string: str | None) -> tuple[int, str | None]:
    """Bracket depth and open multi-line string after ``text``, ignoring what is quoted or commented."""
    i = 0
    while i < len(text):
        if in_string is not None:
            end = text.find(in_string, i)
            if end < 0:
                return depth, in_string
            i, in_string = end + 3, None
            continue
        ch = text[i]
        if text.startswith(('"""', "'''"), i):
            in_string, i = text[i:i + 3], i + 3
            continue
        if ch in "\"'":
            end = _string_end(text, i)
            if end < 0:
                return depth, None  # an unterminated one-line string: tomllib has said so already
            i = end + 1
            continue
        if ch == "#":
            break
        depth += 1 if ch in "[{" else -1 if ch in "]}" else 0
        i += 1
    return max(depth, 0), in_string


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1
