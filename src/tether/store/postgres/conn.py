"""`sql.Conn` over a psycopg 3 async connection with dict rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from tether.store import sql


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

    async def insert_rows(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
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
