"""The PostgreSQL store: many API servers and worker machines on one database.

- Every unit of work runs on a pooled connection (psycopg 3, `psycopg_pool`) in one
  transaction; the shared logic in `tether.store.sql` does the rest.
- Claims use `FOR UPDATE SKIP LOCKED`, so concurrent claimers never block each other
  and never take the same task.
- Triggers `NOTIFY` on new work and task changes; one listener connection per store
  republishes them on the in-process `Hub`, so an idle worker in another process starts
  a new task within milliseconds. Polling stays as the fallback.
- A dropped connection (server restart, failover) surfaces as `OperationalError`, which
  the engine retries with backoff; work that failed before its commit is retried here at
  once on a fresh connection, since it cannot have taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import TransactionRollback
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tether.errors import ConfigError, DatabaseUnavailable, SchemaOutOfDate
from tether.store import sql
from tether.store.base import Claimed, Op
from tether.store.migrations import load_migrations
from tether.store.postgres import batch
from tether.store.postgres.conn import PgConn
from tether.store.sqlbase import SQLStore, Work

T = TypeVar("T")
log = logging.getLogger("tether.store.postgres")

WORK_CHANNEL = "tether_work"
"""NOTIFY channel: payload is a queue that may have runnable work."""
TASK_CHANNEL = "tether_task"
"""NOTIFY channel: some task waited or ended (empty payload: one per transaction, which
the listener answers by reading the tasks its waiters wait for; migration 6)."""
MIGRATION_LOCK = 0x7E7E_0001
"""Advisory lock key that serializes concurrent `tether migrate` runs."""
RETRIES_BEFORE_COMMIT = 3
"""Immediate retries, on a fresh connection, of work whose connection broke before commit."""

_TETHER_PARAMS = ("pool_min", "pool_max", "pool_timeout", "listen", "prepare_threshold")


MIGRATIONS = load_migrations("tether.store.postgres")
LATEST = MIGRATIONS[-1][0]


class PgOptions:
    """A parsed `postgresql://` URL: libpq's connection string plus Tether's own options
    (`pool_min`, `pool_max`, `pool_timeout`, `listen`, `prepare_threshold`)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ConfigError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _TETHER_PARAMS}
        rest = [(k, v) for k, v in query if k not in _TETHER_PARAMS]
        self.conninfo = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment)
        )
        try:
            params = conninfo_to_dict(self.conninfo)
            for port in str(params.get("port") or "5432").split(","):
                if not port.isdigit():
                    raise ValueError(f"invalid port {port!r}")
            self.pool_min = int(ours.get("pool_min", "2"))
            self.pool_max = int(ours.get("pool_max", "10"))
            self.pool_timeout = float(ours.get("pool_timeout", "10"))
            threshold = ours.get("prepare_threshold", "5")
            self.prepare_threshold = (
                None if threshold.lower() in ("none", "off") else int(threshold)
            )
        except (psycopg.ProgrammingError, ValueError) as exc:
            # Never echo the URL: it may carry a password.
            raise ConfigError(
                f"invalid PostgreSQL URL for host {parts.hostname or 'localhost'!r}: "
                f"{_scrub(str(exc), parts.password)}"
            ) from None
        if not 1 <= self.pool_min <= self.pool_max:
            raise ConfigError("PostgreSQL URL: need 1 <= pool_min <= pool_max")
        self.listen = ours.get("listen", "on").lower() not in ("off", "false", "0", "no")
        self.password = str(params.get("password") or parts.password or "") or None
        host = str(params.get("host") or "localhost")
        port = str(params.get("port") or "5432")
        self.dbname = str(params.get("dbname") or params.get("user") or "postgres")
        self.where = f"{host}:{port}" if not host.startswith("/") else host
        self.display = f"postgresql://{self.where}/{self.dbname}"
        """The URL without credentials or options, for messages and logs."""


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


class PostgresStore(SQLStore):
    """The `Store` on PostgreSQL (psycopg 3, async, pooled)."""

    dialect = sql.POSTGRES

    def __init__(self, url: str) -> None:
        super().__init__()
        self.options = PgOptions(url)
        self.url_for_display = self.options.display
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._own_connections: weakref.WeakSet[AsyncConnection[DictRow]] = weakref.WeakSet()
        """Our pool's connections: NOTIFY echoes of their server processes are skipped."""
        self.listening = asyncio.Event()
        """Set while the listener connection is subscribed (tests wait for it)."""

    # life cycle -----------------------------------------------------------------------
    async def open(self, *, check_schema: bool = True) -> None:
        if self._pool is not None:
            return
        o = self.options
        # One direct attempt first, so a wrong host, a refused connection or a missing
        # database is a clear error now rather than a pool timeout later.
        try:
            probe = await AsyncConnection.connect(o.conninfo, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {o.where}, database {o.dbname!r}: "
                f"{_reason(exc, o.password)}"
            ) from None
        await probe.close()
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            o.conninfo,
            connection_class=AsyncConnection[DictRow],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "prepare_threshold": o.prepare_threshold,
                "connect_timeout": 10,
            },
            min_size=o.pool_min,
            max_size=o.pool_max,
            timeout=o.pool_timeout,
            reconnect_timeout=3600.0,  # keep trying through long outages
            name="tether",
            configure=self._remember_backend,
            open=False,
        )
        await pool.open(wait=True, timeout=30)
        self._pool = pool
        if check_schema:
            version = await self.schema_version()
            if version < LATEST:
                await self.close()
                raise SchemaOutOfDate(
                    f"the database {o.display} is at schema version {version}, this Tether "
                    f"needs {LATEST}: run `tether migrate`"
                )
        if o.listen:
            self._listener = asyncio.create_task(self._listen(), name="tether-pg-listener")

    async def close(self) -> None:
        await self._stop_refresh()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def schema_version(self) -> int:
        async def work(conn: sql.Conn) -> int:
            row = await conn.fetchone("SELECT to_regclass('tether_schema') IS NOT NULL AS e")
            if row is None or not row["e"]:
                return 0
            row = await conn.fetchone("SELECT MAX(version) AS v FROM tether_schema")
            return int(row["v"] or 0) if row else 0

        return await self._run(work, write=False)

    async def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction. An advisory lock serializes
        concurrent runs: the second waits, then finds nothing left to do."""

        async def work(conn: sql.Conn) -> list[int]:
            assert isinstance(conn, PgConn)
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tether_schema "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            row = await conn.fetchone("SELECT MAX(version) AS v FROM tether_schema")
            current = int(row["v"] or 0) if row else 0
            applied = []
            for version, script in MIGRATIONS:
                if version <= current:
                    continue
                await conn.script(script)
                await conn.execute(
                    "INSERT INTO tether_schema (version, applied_at) "
                    "VALUES (%s, extract(epoch FROM now()))",
                    (version,),
                )
                applied.append(version)
            return applied

        return await self._run(work)

    # running work ---------------------------------------------------------------------
    async def _run(self, work: Work[T], *, write: bool = True) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the store is not open")
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                async with pool.connection() as conn:
                    if not write:
                        return await work(PgConn(conn))
                    async with conn.transaction():
                        result = await work(PgConn(conn))
                        committing = True
                    return result
            except PoolTimeout:
                raise
            except psycopg.OperationalError as exc:
                # Before COMMIT was sent, nothing took effect: retry at once on a fresh
                # connection. A failed COMMIT is in doubt: the caller decides (the
                # engine's operations are fenced, so its retry is safe).
                if committing or attempt > RETRIES_BEFORE_COMMIT or not _retry_now(exc):
                    raise
                log.info("retrying after %s: %s", type(exc).__name__, exc)
                if isinstance(exc, TransactionRollback):
                    await asyncio.sleep(0.01 * attempt)
                else:
                    await pool.check()  # drop every connection the outage broke

    async def claim(
        self,
        worker: str,
        queues: list[str],
        limit: int,
        now: float,
        lease_until: float,
        workflows: list[str] | None = None,
    ) -> list[Claimed]:
        """One autocommit statement (`batch.claim`). Not retried here: a statement whose
        connection broke is in doubt; the worker claims again, and a claim that did
        commit unseen expires with its lease."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the store is not open")
        async with pool.connection() as conn:
            return await batch.claim(
                PgConn(conn), worker, queues, limit, now, lease_until, workflows
            )

    async def _run_ops(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        """Worker operations, set-based: one statement per kind per batch. `batch` opens
        its own transaction only when it needs more than one statement (a single
        statement in autocommit is atomic), so no immediate retry here: a statement
        whose connection broke is in doubt, and the committer retries (fenced ops)."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the store is not open")
        async with pool.connection() as conn:
            return await batch.apply_ops(PgConn(conn), ops, worker, now)

    # cross-process wake-ups -----------------------------------------------------------
    async def _listen(self) -> None:
        """Hold one connection LISTENing and republish what it hears on `self.hub`;
        reconnect with backoff when it drops."""
        delay = 0.1
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self.options.conninfo, autocommit=True, connect_timeout=10
                )
            except psycopg.Error as exc:
                log.warning("listener cannot connect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {WORK_CHANNEL}")
                await conn.execute(f"LISTEN {TASK_CHANNEL}")
                delay = 0.1
                self.listening.set()
                # Whatever was announced while we were away is lost: look again.
                self.hub.notify_all_work()
                self._tasks_changed_elsewhere()
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload, note.pid)
            except psycopg.Error as exc:
                log.warning("listener connection lost (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(delay)

    async def _remember_backend(self, conn: AsyncConnection[DictRow]) -> None:
        self._own_connections.add(conn)

    def _own_backend(self, pid: int) -> bool:
        # Live connections only: a closed one's server pid may be reused by another's.
        return any(c.info.backend_pid == pid for c in self._own_connections if not c.closed)

    def _dispatch(self, channel: str, payload: str, sender: int = 0) -> None:
        self.hub.notify_events()  # new work and task changes both wrote events
        if channel == WORK_CHANNEL:
            self.hub.notify_work(payload)
        elif channel == TASK_CHANNEL and not self._own_backend(sender):
            # Our own commits were announced in-process already, with more detail (an
            # ended task's outcome). Another process's carry no task ids (one per
            # transaction, migration 6): read the tasks our waiters wait for.
            self._tasks_changed_elsewhere()


def _retry_now(exc: psycopg.OperationalError) -> bool:
    """Worth an immediate retry: the connection broke, or a deadlock/serialization loss."""
    if isinstance(exc, TransactionRollback):
        return True
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))


def _reason(exc: psycopg.Error, password: str | None) -> str:
    """The useful line of a libpq error, without the password."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # libpq says "connection failed: connection to server at ... failed: <reason>".
    reason = lines[-1] if lines else type(exc).__name__
    reason = re.sub(r"^(connection failed: )?connection to server at [^:]*:?\s*", "", reason)
    reason = re.sub(r"^.*?failed: ", "", reason) if "failed: " in reason else reason
    reason = reason.removeprefix("FATAL:").strip()
    return _scrub(reason, password) or type(exc).__name__


__all__ = ["LATEST", "MIGRATIONS", "PgOptions", "PostgresStore"]
