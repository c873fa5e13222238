"""What Tether stores: one definition of a storable value, for every surface.

Both backends keep text columns and JSON text. SQLite takes nearly anything; PostgreSQL
refuses a NUL character in text, every driver refuses a lone surrogate (it is not
UTF-8), JSON has no NaN or Infinity (orjson would write `null`: the value silently
changes), and orjson encodes integers only from -2**63 to 2**64 - 1. So a value is
*storable* when

- every string, object keys included, has no NUL (U+0000) and no lone surrogate
  (U+D800..U+DFFF);
- every number is finite;
- every integer lies in `INT_MIN .. INT_MAX` (a column may ask for less: event ids are
  at most `SAFE_INT_MAX`, what a JSON client reads exactly);
- arrays and objects nest at most `MAX_DEPTH` deep.

The same rules hold on both backends and on every surface: the HTTP API refuses a
request that breaks them with a 422 naming the field (`tether.api.inputs`), and the
Python API raises `NotStorable` (or `InputValidationError` for a task's input) before
anything is stored. Values Tether writes itself (step results, errors) are not held to
them here: the engine reports a result it cannot store as `UnserializableResult`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tether import serde
from tether.errors import NotStorable

MAX_DEPTH = 128
"""Deepest nesting of arrays and objects in a stored JSON value."""
INT_MIN = -(2**63)
"""Smallest integer in a stored JSON value."""
INT_MAX = 2**64 - 1
"""Largest integer in a stored JSON value."""
SAFE_INT_MAX = 2**53 - 1
"""Largest id a JSON client reads exactly as a number (event ids)."""
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of an INTEGER column on PostgreSQL (a task's priority)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Violation:
    """Where a value breaks the rules and how: `loc` is the path of keys and indexes
    from the value to the offending part (empty: the value itself)."""

    loc: tuple[str | int, ...]
    reason: str
    kind: str


def text_violation(text: str) -> Violation | None:
    """What is wrong with `text` as stored text (None: nothing)."""
    if "\x00" in text:
        return Violation((), "contains a NUL character (U+0000)", "string_nul")
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return Violation((), "contains a lone surrogate (not UTF-8)", "string_surrogate")
    return None


def printable(text: str) -> str:
    """`text` with NUL and lone surrogates written as `\\uXXXX`: fit to quote in an
    error (a lone surrogate would make the error itself unencodable)."""
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def find(value: Any, max_depth: int = MAX_DEPTH) -> Violation | None:
    """The first place where `value` breaks the rules, depth first (None: storable).
    Types the rules do not cover (dates, UUIDs) are left to the encoder."""
    return _find(value, (), max_depth)


def _find(value: Any, loc: tuple[str | int, ...], depth: int) -> Violation | None:
    kind = type(value)
    if kind is str:
        found = text_violation(value)
        return None if found is None else Violation(loc, found.reason, found.kind)
    if kind is bool or value is None:
        return None
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if INT_MIN <= value <= INT_MAX:
            return None
        return Violation(loc, "is an integer outside -2**63 .. 2**64-1", "int_range")
    if kind is float or isinstance(value, float):
        if math.isfinite(value):
            return None
        return Violation(loc, "is not a finite number (NaN or Infinity)", "number_not_finite")
    if isinstance(value, BaseModel):
        return _find(value.model_dump(mode="json"), loc, depth)
    if isinstance(value, dict):
        if depth <= 0:
            return _too_deep(loc)
        for key, item in value.items():
            at = (*loc, printable(key) if isinstance(key, str) else str(key))
            found = _find(key, at, depth - 1) if isinstance(key, str) else None
            if found is None:
                found = _find(item, at, depth - 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple | set | frozenset):
        if depth <= 0:
            return _too_deep(loc)
        for i, item in enumerate(value):
            found = _find(item, (*loc, i), depth - 1)
            if found is not None:
                return found
        return None
    if isinstance(value, str):  # a str subclass (an enum member)
        return _find(str(value), loc, depth)
    return None


def _too_deep(loc: tuple[str | int, ...]) -> Violation:
    return Violation(loc, f"nests arrays or objects more than {MAX_DEPTH} deep", "too_deep")


def check(value: Any, field: str) -> None:
    """Raise `NotStorable` naming `field` when `value` breaks the rules."""
    found = find(value)
    if found is not None:
        raise NotStorable(field, found.loc, found.reason, found.kind)


def check_text(value: str | None, field: str) -> None:
    """Raise `NotStorable` when `value` (a text field; None passes) holds a NUL or a
    lone surrogate."""
    if value is not None:
        found = text_violation(value)
        if found is not None:
            raise NotStorable(field, (), found.reason, found.kind)


def check_int(value: int, field: str, low: int, high: int) -> None:
    """Raise `NotStorable` when `value` is outside `low .. high` (a column's range)."""
    if not low <= value <= high:
        raise NotStorable(field, (), f"is outside {low} .. {high}", "int_range")


def encode(value: Any, field: str) -> str:
    """The JSON text of `value`, after holding it to the rules; raises `NotStorable`.

    Cheap for the common value: orjson itself refuses out-of-range integers, lone
    surrogates and very deep nesting, and what it lets through (NUL, written `\\u0000`;
    NaN and Infinity, written `null`; nesting between `MAX_DEPTH` and its own limit)
    shows in its output, so the value is walked only when the text holds one of those."""
    try:
        text = serde.dumps(value)
    except TypeError:
        check(value, field)  # names the place when the rules explain the failure
        raise
    if "null" in text or "\\u0000" in text or text.count("[") + text.count("{") > MAX_DEPTH:
        check(value, field)
    return text


__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "SAFE_INT_MAX",
    "Violation",
    "check",
    "check_int",
    "check_text",
    "encode",
    "find",
    "printable",
    "text_violation",
]
