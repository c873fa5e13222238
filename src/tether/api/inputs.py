"""Every request under `/v1/` held to `tether.storable`'s rules before a route sees it.

A NUL character in a path segment, a query parameter, a header or anywhere in a JSON
body (object keys too), a lone surrogate, `NaN` or `Infinity` (not JSON, but Python's
parser reads them), a number that overflows to infinity, an integer outside the 64-bit
range, or nesting deeper than `storable.MAX_DEPTH`: each is refused with a 422
`invalid-request` whose `errors[0].loc` names the field, on both backends (PostgreSQL
would otherwise refuse the NUL itself, with a 500), whatever the route.

The body check runs on every submit, so it is built to be cheap: the raw bytes are
scanned for what could break a rule (the escape `\\u0000` or a surrogate escape, the
words `NaN` and `Infinity`, a run of 19 digits, a three-digit exponent, a NUL byte, a
byte that may start an encoded surrogate); only a body with one of those is parsed and
walked to find the field. A body without them cannot break a rule once parsed, except
by nesting deep, which `tether.storable.encode` catches where a value is stored.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

from tether import storable

FieldError = dict[str, Any]
"""One entry of a problem's `errors`: `loc`, `msg`, `type`."""

_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
_SIGNS = b"+-"
_LONG_RUN = b"0" * 19  # 2**63 has 19 digits: every shorter integer fits
_WIDE_EXPONENT = b"e000"  # 1e309 is the smallest power of ten past a double


def _suspect(body: bytes) -> bool:
    """False when no value in this JSON text can break a rule (cheap, C-speed scans);
    True when it may (then the body is parsed to find out)."""
    if b"\\u" in body and _ESCAPE.search(body) is not None:
        return True
    if b"NaN" in body or b"Infinity" in body or b"\x00" in body or b"\xed" in body:
        # \x00: UTF-16 or UTF-32 text, which the parser accepts; \xed: the lead byte
        # of an encoded surrogate (and of some Hangul, which then takes the slow path).
        return True
    digits = body.translate(_DIGITS, _SIGNS)
    return _LONG_RUN in digits or _WIDE_EXPONENT in digits


def body_errors(body: bytes) -> list[FieldError]:
    """The field errors of a JSON request body (empty: none). A body that does not
    parse is not judged here: the route answers it (400 `malformed-request`)."""
    if not _suspect(body):
        return []
    try:
        # The parser the routes use (the standard library's), so the same value.
        value = json.loads(body)
    except (ValueError, RecursionError):
        return []
    found = storable.find(value)
    return [] if found is None else [_error(["body", *found.loc], found)]


def request_errors(scope: Scope) -> list[FieldError]:
    """The field errors of a request's path, query string and headers (empty: none)."""
    errors: list[FieldError] = []
    path: str = scope.get("path", "")
    found = storable.text_violation(path)
    if found is not None:
        errors.append(_error(["path", *_path_field(scope)], found))
    query: bytes = scope.get("query_string", b"")
    # Decoded with errors="replace", as Starlette does: a query holds no surrogate.
    if query and (b"%00" in query or b"\x00" in query):
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            for text in (name, value):
                found = storable.text_violation(text)
                if found is not None:
                    errors.append(_error(["query", storable.printable(name)], found))
                    break
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    # Read as latin-1, a header holds no surrogate: NUL is the one risk. One scan of
    # them all (a loop over each header cost more than the rest of these checks).
    if b"\x00" in b"".join(itertools.chain.from_iterable(headers)):
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1")
            found = storable.text_violation(name + raw_value.decode("latin-1"))
            if found is not None:
                errors.append(_error(["header", storable.printable(name)], found))
    return errors


def _path_field(scope: Scope) -> list[str]:
    """The name of the path parameter that holds the refused text, from the paths of
    the app's OpenAPI document (empty when none matches). Only asked for a refused
    request, so the cost of matching does not matter."""
    openapi = getattr(scope.get("app"), "openapi", None)
    if openapi is None:
        return []
    path: str = scope.get("path", "")
    for template in openapi().get("paths", {}):
        found = _template(template).fullmatch(path)
        if found is not None:
            for name, value in found.groupdict().items():
                if storable.text_violation(value) is not None:
                    return [name]
    return []


@functools.lru_cache(maxsize=256)
def _template(template: str) -> re.Pattern[str]:
    """`/v1/tasks/{task_id}` as a pattern with a group per parameter."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile(
        "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)),
        re.DOTALL,
    )


def _error(loc: list[str | int], found: storable.Violation) -> FieldError:
    return {"loc": loc, "msg": found.reason, "type": found.kind}


__all__ = ["FieldError", "body_errors", "request_errors"]
