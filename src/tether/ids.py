"""Identifiers: UUIDv7, so that ids sort by creation time."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """A new time-ordered UUIDv7, as text."""
    return str(uuid_utils.uuid7())


def id_floor(at: float) -> str:
    """The smallest id a task created at `at` (epoch seconds) or later can have: the
    UUIDv7 text with that millisecond and every other bit zero. With the (tenant, id)
    index it finds tasks created since a time without an index of its own."""
    hex_ms = f"{max(0, int(at * 1000)):012x}"
    return f"{hex_ms[:8]}-{hex_ms[8:]}-0000-0000-000000000000"
