"""Page cursors: what a list's `next_cursor` holds and its `cursor` parameter takes back.

A cursor is the position of the last item of a page, in the list's order (keyset
pagination: stable while items are added, one index range per page), written as
base64url JSON tagged with the list it belongs to. It is opaque to callers: a cursor
this API did not hand out for that list is refused with an `invalid-cursor` problem,
never read as something else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Query

from tether.api import problem_types
from tether.api.problems import ProblemError
from tether.storable import text_violation

MAX_LENGTH = 200
"""Longest cursor the list endpoints accept (theirs are well under it)."""

Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_LENGTH,
        description="`next_cursor` of the previous page (opaque: base64url)",
        # Stated, not checked by the parameter: any cursor this list did not hand out,
        # malformed or not, answers the same `invalid-cursor` problem (`decode`).
        json_schema_extra={"minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
    ),
]
"""The `cursor` query parameter of every paged list."""


T = TypeVar("T")


def page(
    found: Sequence[T], limit: int, cursor_of: Callable[[T], str]
) -> tuple[list[T], str | None]:
    """The first `limit` of `found` (read with one more, which says whether a next page
    exists) and the cursor of the next page, made from this page's last item (None: the
    last page)."""
    items = list(found[:limit])
    if len(found) > limit and items:
        return items, cursor_of(items[-1])
    return items, None


def encode(listing: str, *position: str | float) -> str:
    """The cursor of `position` (the last item's sort key) in the list `listing`."""
    raw = orjson.dumps([listing, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(listing: str, cursor: str, shape: tuple[type, ...]) -> tuple[Any, ...]:
    """The position a cursor of `listing` names, each part of the type in `shape`.
    Raises an `invalid-cursor` problem for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if not isinstance(value, list) or len(value) != len(shape) + 1 or value[0] != listing:
        raise _invalid()
    position = tuple(value[1:])
    for part, kind in zip(position, shape, strict=True):
        ok = isinstance(part, int | float) if kind is float else isinstance(part, kind)
        if not ok or isinstance(part, bool):
            raise _invalid()
        if isinstance(part, str) and text_violation(part) is not None:
            raise _invalid()  # decoded from `\u0000` in the JSON: no id of ours holds it
    return tuple(float(p) if k is float else p for p, k in zip(position, shape, strict=True))


def _invalid() -> ProblemError:
    return ProblemError(
        problem_types.INVALID_CURSOR,
        "the cursor is not one this list returned; pass `next_cursor` as it came",
        errors=[{"loc": ["query", "cursor"], "msg": "not a cursor of this list", "type": "cursor"}],
    )
