"""The PostgreSQL store: many API servers and worker machines on one database.

- Every unit of work runs on a pooled connection (psycopg 3, `psycopg_pool`) in one
  transaction; the shared logic in `tether.store.sql` does the rest.
- Claims use `FOR UPDATE SKIP LOCKED`, so concurrent claimers never block each other
  and never take the same task.
- Triggers `NOTIFY` on new work and task changes; one listener connection per store
  republishes them on the in-process `Hub`, so an idle worker in another process starts
  a new task within milliseconds. Polling stays as the fallback.
- A dropped connection (server restart, failover): work that failed before its commit
  is retried here at once on a fresh connection, since it cannot have taken effect.
  When the server cannot be reached, operations raise `StoreUnavailable` (the API
  answers 503, the engine waits and carries on) and a probe brings the pool back
  within a fraction of a second of the server's return (`pool.Connections`, ADR 71).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg_pool import PoolClosed

from tether.errors import ConfigError, DatabaseUnavailable, SchemaOutOfDate
from tether.store import sql
from tether.store.availability import Availability
from tether.store.base import Claimed, Eager, NewTask, Op, Submitted
from tether.store.migrations import load_migrations
from tether.store.postgres import batch
from tether.store.postgres.conn import PgConn
from tether.store.postgres.pool import (
    Connections,
    connection_failure,
    reason,
    retry_now,
    rolled_back,
)
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
LISTEN_RETRY_MAX = 1.0
"""Longest wait, in seconds, between the listener's attempts to reconnect."""

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
        self.availability = Availability(self.options.display, log)
        self._conns = Connections(
            self.options, self.availability, self._remember_backend, self._back_again
        )
        self._opened = False
        self._listener: asyncio.Task[None] | None = None
        self._own_connections: weakref.WeakSet[AsyncConnection[DictRow]] = weakref.WeakSet()
        """Our pool's connections: NOTIFY echoes of their server processes are skipped."""
        self.listening = asyncio.Event()
        """Set while the listener connection is subscribed (tests wait for it)."""

    # life cycle -----------------------------------------------------------------------
    async def open(self, *, check_schema: bool = True) -> None:
        if self._opened:
            return
        o = self.options
        # One direct attempt first, so a wrong host, a refused connection or a missing
        # database is a clear error now rather than a pool timeout later.
        try:
            probe = await AsyncConnection.connect(o.conninfo, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {o.where}, database {o.dbname!r}: "
                f"{reason(exc, o.password)}"
            ) from None
        await probe.close()
        await self._conns.open()
        self._opened = True
        self.availability.restored()  # reopened after an outage: it answers now
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
        if self._opened:
            self._opened = False
            await self._conns.close()

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
    async def _run(self, work: Work[T], *, write: bool = True, durable: bool = True) -> T:
        attempt = 0
        while True:
            pool = self._conns.pool()  # StoreUnavailable at once while the database is lost
            attempt += 1
            committing = False
            try:
                async with pool.connection() as conn:
                    if not write:
                        return await work(PgConn(conn))
                    async with conn.transaction():
                        if not durable:
                            await conn.execute(batch.ASYNC_COMMIT)
                        result = await work(PgConn(conn))
                        committing = True
                    return result
            except PoolClosed as exc:
                # The probe replaced the pool while we waited for it: use the new one.
                replaced = self._opened and not self._conns.current(pool)
                if replaced and attempt <= RETRIES_BEFORE_COMMIT:
                    continue
                raise self._conns.failed(exc) from None
            except psycopg.OperationalError as exc:
                # Before COMMIT was sent, nothing took effect: retry at once on a fresh
                # connection. A failed COMMIT is in doubt: the caller decides (the
                # engine's operations are fenced, so its retry is safe).
                if committing or attempt > RETRIES_BEFORE_COMMIT or not retry_now(exc):
                    if connection_failure(exc):
                        raise self._conns.failed(exc) from exc
                    raise
                log.info("retrying after %s: %s", type(exc).__name__, reason(exc, None))
                if rolled_back(exc):
                    await asyncio.sleep(0.01 * attempt)
                    continue
                # Is the server there? If not, the retry fails at once (StoreUnavailable).
                self._conns.suspect()
                await self._conns.verdict()
                if self._conns.current(pool):
                    await pool.check()  # drop every connection the outage broke

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection for one autocommit statement or a transaction the caller
        runs itself; a failure to reach the server raises `StoreUnavailable`."""
        try:
            async with self._conns.pool().connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            if connection_failure(exc):
                raise self._conns.failed(exc) from exc
            raise

    async def _write_submits(
        self, tasks: list[NewTask], now: float, eager: Eager | None = None
    ) -> list[Submitted]:
        """A few plain tasks (the intake's usual group) in one autocommit statement
        (`batch.submit`); anything else in the shared logic's transaction. Not retried
        here: a broken connection leaves the statement in doubt, and the task ids are
        the caller's, so writing them again could only fail on the primary key."""
        if eager is not None or not batch.one_statement_submit(tasks):
            return await super()._write_submits(tasks, now, eager)
        async with self._connection() as conn:
            return await batch.submit(PgConn(conn), tasks, now)

    async def claim(
        self,
        worker: str,
        queues: list[str],
        limit: int,
        now: float,
        lease_until: float,
        workflows: Sequence[tuple[str, int]] | None = None,
        max_lease_expiries: int = 0,
    ) -> list[Claimed]:
        """One autocommit statement (`batch.claim`). Not retried here: a statement whose
        connection broke is in doubt; the worker claims again, and a claim that did
        commit unseen expires with its lease."""
        async with self._connection() as conn:
            outcome = await batch.claim(
                PgConn(conn), worker, queues, limit, now, lease_until, workflows, max_lease_expiries
            )
        self._announce_lost(outcome.lost)
        await self._lost_families(outcome.lost, now)
        return outcome.claimed

    async def _run_ops(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        """Worker operations, set-based: one statement per kind per batch. `batch` opens
        its own transaction only when it needs more than one statement (a single
        statement in autocommit is atomic), so no immediate retry here: a statement
        whose connection broke is in doubt, and the committer retries (fenced ops)."""
        async with self._connection() as conn:
            return await batch.apply_ops(PgConn(conn), ops, worker, now)

    def _back_again(self) -> None:
        """The database is back after an outage: whatever was announced meanwhile is
        lost, so every waiting worker and follower looks again now."""
        self.hub.notify_all_work()
        self._tasks_changed_elsewhere()

    # cross-process wake-ups -----------------------------------------------------------
    async def _listen(self) -> None:
        """Hold one connection LISTENing and republish what it hears on `self.hub`;
        reconnect with backoff when it drops."""
        delay = 0.1
        failing = False
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self.options.conninfo, autocommit=True, connect_timeout=10
                )
            except psycopg.Error as exc:
                # Said once (a lost connection was said already): polling covers for
                # the listener meanwhile.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "listener cannot connect (%s); retrying", reason(exc, None))
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)
                continue
            try:
                await conn.execute(f"LISTEN {WORK_CHANNEL}")
                await conn.execute(f"LISTEN {TASK_CHANNEL}")
                delay, failing = 0.1, False
                self.listening.set()
                # Whatever was announced while we were away is lost: look again.
                self.hub.notify_all_work()
                self._tasks_changed_elsewhere()
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload, note.pid)
            except psycopg.Error as exc:
                log.warning("listener connection lost (%s); reconnecting", reason(exc, None))
                failing = True
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


__all__ = ["LATEST", "MIGRATIONS", "PgOptions", "PostgresStore"]
