"""Identifiers: UUIDv7, so that ids sort by creation time."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """A new time-ordered UUIDv7, as text."""
    return str(uuid_utils.uuid7())
