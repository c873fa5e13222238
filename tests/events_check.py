"""Hold every event a test wrote to the catalogue (`tether.models.events.EVENT_CATALOGUE`).

`store_url` runs this after each test on its database, SQLite or PostgreSQL, so the
whole suite checks that no event type, column or payload field goes uncatalogued.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tether.models.events import EVENT_CATALOGUE, OPTIONAL_COLUMNS, EventType

_SELECT = f"SELECT id, type, data, {', '.join(OPTIONAL_COLUMNS)} FROM events ORDER BY id"


def _rows(url: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return []
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
                return [dict(r) for r in conn.execute(_SELECT)]
            return []
        finally:
            conn.close()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        found = conn.execute("SELECT to_regclass('events') AS t").fetchone()
        if found is None or found["t"] is None:
            return []
        return list(conn.execute(_SELECT))


def catalogue_problems(url: str) -> list[str]:
    """What the events in the database at `url` do that the catalogue does not say."""
    problems = []
    for row in _rows(url):
        name = f"event {row['id']} ({row['type']})"
        try:
            kind = EVENT_CATALOGUE[EventType(row["type"])]
        except ValueError:
            problems.append(f"{name}: type not in the catalogue")
            continue
        for column in OPTIONAL_COLUMNS:
            if row[column] is not None and column not in kind.columns:
                problems.append(f"{name}: fills {column}, which its kind does not")
        data = row["data"] or {}
        data = json.loads(data) if isinstance(data, str) else data
        extra = set(data) - set(kind.data)
        if extra and not kind.open_data:
            problems.append(f"{name}: payload fields {sorted(extra)} not in the catalogue")
    return problems
