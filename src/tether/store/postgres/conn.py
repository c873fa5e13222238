"""`sql.Conn` over a psycopg 3 async connection with dict rows."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection, AsyncTransaction
from psycopg.rows import DictRow

from tether.store import sql

COPY_FROM = 16
"""Row count from which `insert_rows` streams with COPY instead of a multi-row INSERT."""


def values_list(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`(%s, ...), (%s, ...)` for `rows` (all of one width), and their parameters."""
    one = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
    return ", ".join([one] * len(rows)), [v for row in rows for v in row]


class PgConn:
    """The shared logic's connection interface, on one checked-out psycopg connection."""

    def __init__(self, conn: AsyncConnection[DictRow]) -> None:
        self._conn = conn

    async def fetchall(self, text: str, params: Sequence[Any] = ()) -> list[sql.Row]:
        cur = await self._conn.execute(text, params)
        rows: list[sql.Row] = list(await cur.fetchall())
        return rows

    async def fetchone(self, text: str, params: Sequence[Any] = ()) -> sql.Row | None:
        cur = await self._conn.execute(text, params)
        return await cur.fetchone()

    async def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(text, params)
        return cur.rowcount

    def transaction(self) -> AbstractAsyncContextManager[AsyncTransaction]:
        """An explicit transaction (the pool's connections are in autocommit)."""
        return self._conn.transaction()

    async def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if len(rows) <= COPY_FROM:
            # A few rows: one multi-row INSERT is one round trip; COPY costs three.
            values, params = values_list(rows)
            await self._conn.execute(f"INSERT INTO {table} ({columns}) VALUES {values}", params)
            return
        # COPY: one stream for any number of rows (row triggers still fire).
        async with (
            self._conn.cursor() as cur,
            cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                await copy.write_row(row)

    async def script(self, text: str) -> None:
        """Run a multi-statement script (no parameters: the simple query protocol)."""
        await self._conn.execute(text, prepare=False)
