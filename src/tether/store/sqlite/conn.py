"""`sql.Conn` over a sqlite3 connection, and the parsing around it (URLs, scripts)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

from tether.errors import ConfigError
from tether.store import sql
from tether.store.sqlbase import Work

T = TypeVar("T")


class SyncConn:
    """`sql.Conn` over a sqlite3 connection; its coroutines complete without suspending."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._cache: dict[str, str] = {}

    def _sql(self, text: str) -> str:
        out = self._cache.get(text)
        if out is None:
            out = self._cache[text] = text.replace("%s", "?")
        return out

    async def fetchall(self, text: str, params: Sequence[Any] = ()) -> list[sql.Row]:
        return self._conn.execute(self._sql(text), params).fetchall()

    async def fetchone(self, text: str, params: Sequence[Any] = ()) -> sql.Row | None:
        row: sql.Row | None = self._conn.execute(self._sql(text), params).fetchone()
        return row

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(self._sql(text), params).rowcount

    async def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self._conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def run_sync(work: Work[T], conn: SyncConn) -> T:
    coro = work(conn)
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()  # type: ignore[attr-defined]
    raise RuntimeError("SQLite work must not await anything but the connection")


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite://:memory:`; options
    as query parameters (`?synchronous=normal`)."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ConfigError(f"not a SQLite URL: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.netloc == ":memory:" or parsed.path in ("/:memory:", ":memory:"):
        return ":memory:", options
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if not path:
        raise ConfigError(f"SQLite URL has no file path: {url!r} (try sqlite:///tether.db)")
    return path, options


def split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current: list[str] = []
    depth = 0
    for line in script.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        upper = stripped.upper()
        if upper == "BEGIN" or upper.endswith(" BEGIN"):
            depth += 1
        if stripped.endswith(";"):
            if depth and upper.startswith("END"):
                depth -= 1
            if depth == 0:
                statements.append("\n".join(current))
                current = []
    if current and "".join(current).strip():
        statements.append("\n".join(current))
    return statements
