"""The one JSON reader for untrusted input (REST bodies and WebSocket frames): bounded depth.

`json.loads` recurses once per nested array or object, so 5,000 `[` raise RecursionError deep in
the parser (a 500, or a dead connection handler). The nesting is measured first in one pass over
the text, outside strings, and anything deeper than `max_depth` is refused as invalid input.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class InvalidJson(ValueError):
    """Not JSON, or nested deeper than allowed."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def too_deep(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in `text` nest deeper than max_depth."""
    # Counting brackets runs in C; only a text with more openers than the limit needs the scan.
    return text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed value; InvalidJson if `raw` is not UTF-8 JSON or nests deeper than max_depth."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError:
        raise InvalidJson("not UTF-8") from None
    if too_deep(text, max_depth):
        raise InvalidJson(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidJson("not valid JSON") from None
