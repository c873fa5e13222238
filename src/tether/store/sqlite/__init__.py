"""The embedded SQLite store: zero set-up, WAL, one file, many processes.

All database work of a process runs in one thread holding one connection. Units of work
queue up while the previous transaction commits, and the thread runs everything queued
as one transaction (each unit inside its own savepoint, so one failing unit rolls back
alone): many tasks' step records share one fsync. That is group commit, and it is what
makes a durable step cost microseconds instead of a disk flush each.

A file that cannot be opened or written (read-only, a full or failing disk) fails the
units of work with `StoreUnavailable`, and the database counts as *lost* until a write
succeeds again; meanwhile the thread probes it with a harmless write every
`PROBE_EVERY` seconds, so it is found writable again without waiting for traffic
(ADR 71).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from typing import Any, TypeVar

from tether.errors import ConfigError, SchemaOutOfDate, StoreUnavailable
from tether.store import sql
from tether.store.availability import Availability
from tether.store.base import Op
from tether.store.migrations import load_migrations
from tether.store.sqlbase import SQLStore, Work
from tether.store.sqlite import batch
from tether.store.sqlite.conn import SyncConn, parse_sqlite_url, run_sync, split_sql
from tether.store.sqlite.doorbell import Doorbell

T = TypeVar("T")
log = logging.getLogger("tether.store.sqlite")

WATCH_EVERY = 0.02
"""Seconds between checks for commits by other processes (`PRAGMA data_version`); a
ring of the doorbell makes the database thread check at once (`doorbell`)."""

_LOOK = object()
"""Put on the database thread's queue when the doorbell rang: check `data_version` now."""

MAX_BATCH = 512
"""Units of work committed together at most; bounds the latency one commit adds."""

PROBE_EVERY = 0.25
"""Seconds between the database thread's write probes while the file cannot be written."""

UNAVAILABLE_CODES = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN}
)
"""SQLite's primary result codes that say the file cannot be used now (read-only, a
failing or full disk, cannot be opened), not that a statement was wrong."""


MIGRATIONS = load_migrations("tether.store.sqlite")
LATEST = MIGRATIONS[-1][0]


class _Job:
    __slots__ = ("durable", "error", "fut", "result", "work", "write")

    def __init__(
        self, work: Work[Any], write: bool, fut: asyncio.Future[Any], durable: bool = True
    ) -> None:
        self.work = work
        self.write = write
        self.durable = durable
        """False for a write that needs no flush of its own (a claim, ADR 75)."""
        self.fut = fut
        self.result: Any = None
        self.error: BaseException | None = None


class SQLiteStore(SQLStore):
    """The `Store` on a SQLite file (WAL mode)."""

    dialect = sql.SQLITE

    def __init__(self, url: str) -> None:
        super().__init__()
        self.path, options = parse_sqlite_url(url)
        self.url_for_display = url
        self.availability = Availability(self.path, log)
        self._lost = False
        """The database thread's view: the last unit of work found the file unusable."""
        synchronous = options.get("synchronous", "full").upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(f"invalid SQLite synchronous mode {synchronous!r}")
        self._synchronous = synchronous
        self._busy_timeout_ms = int(options.get("busy_timeout_ms", "30000"))
        self._queue: queue.SimpleQueue[_Job | object | None] = queue.SimpleQueue()
        self._doorbell: Doorbell | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # life cycle -----------------------------------------------------------------------
    async def open(self, *, check_schema: bool = True) -> None:
        if self._thread is not None:
            return
        if self.path != ":memory:":
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise ConfigError(f"SQLite database folder does not exist: {folder}")
        self._loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            self._doorbell = Doorbell.open(self.path)
            if self._doorbell is not None:
                self._loop.add_reader(self._doorbell.fileno(), self._rung)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="tether-sqlite", daemon=True
        )
        self._thread.start()
        await ready
        if check_schema:
            version = await self.schema_version()
            if version < LATEST:
                await self.close()
                raise SchemaOutOfDate(
                    f"the database {self.path} is at schema version {version}, this Tether "
                    f"needs {LATEST}: run `tether migrate`"
                )

    async def close(self) -> None:
        if self._thread is None:
            return
        await self._stop_refresh()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        self._close_doorbell()

    def _close_doorbell(self) -> None:
        if self._doorbell is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._doorbell.fileno())
            self._doorbell.close()
            self._doorbell = None

    async def schema_version(self) -> int:
        async def work(conn: sql.Conn) -> int:
            exists = await conn.fetchone(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tether_schema'"
            )
            if exists is None:
                return 0
            row = await conn.fetchone("SELECT MAX(version) AS v FROM tether_schema")
            return int(row["v"] or 0) if row else 0

        return await self._run(work, write=False)

    async def migrate(self) -> list[int]:
        applied: list[int] = await self._run_raw(self._migrate_sync)
        return applied

    def _migrate_sync(self, conn: sqlite3.Connection) -> list[int]:
        conn.execute("BEGIN IMMEDIATE")  # also serializes concurrent `tether migrate`s
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tether_schema "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT MAX(version) FROM tether_schema").fetchone()[0] or 0
            applied = []
            for version, script in MIGRATIONS:
                if version <= current:
                    continue
                for statement in split_sql(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO tether_schema (version, applied_at) VALUES (?, unixepoch())",
                    (version,),
                )
                applied.append(version)
            conn.execute("COMMIT")
            return applied
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # other processes ---------------------------------------------------------------
    def _rung(self) -> None:
        """Another process rang after committing: have the database thread look now."""
        if self._doorbell is not None:
            self._doorbell.drain()
            self._queue.put(_LOOK)

    def _external_change(self) -> None:
        """Another process committed: new work may be there, a watched task may have
        ended. Runs on the event loop."""
        self.hub.notify_all_work()
        self.hub.notify_events()
        self._tasks_changed_elsewhere()

    # running work ---------------------------------------------------------------------
    async def _run_ops(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        """Worker operations, set-based: a few statements per batch (`batch`)."""

        async def work(conn: sql.Conn) -> list[bool]:
            return await batch.apply_ops(conn, ops, worker, now)

        return await self._run(work)

    async def _run(self, work: Work[T], *, write: bool = True, durable: bool = True) -> T:
        if self._thread is None or self._loop is None:
            raise RuntimeError("the store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(work, write, fut, durable))
        return await fut

    async def _run_raw(self, fn: Any) -> Any:
        """Run `fn(sqlite3.Connection)` in the database thread, outside any batch."""

        async def work(conn: sql.Conn) -> Any:
            assert isinstance(conn, SyncConn)
            return fn(conn._conn)

        if self._loop is None:
            raise RuntimeError("the store is not open")
        fut: asyncio.Future[Any] = self._loop.create_future()
        job = _Job(work, write=False, fut=fut)
        job.write = None  # type: ignore[assignment]  # marks "raw": runs alone, no txn
        self._queue.put(job)
        return await fut

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. The switch needs the file to itself and, unlike ordinary
        statements, may fail at once instead of waiting when another process is opening
        the same new file: retry within the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.01
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if self.path != ":memory:":
            self._enable_wal(conn)
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -32000")
        return conn

    def _serve(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect()
        except Exception as exc:  # report to open(), which raises it
            loop.call_soon_threadsafe(_settle, [_outcome(ready, None, exc)])
            return
        loop.call_soon_threadsafe(_settle, [_outcome(ready, None, None)])
        adapter = SyncConn(conn)
        watch = self.path != ":memory:"
        seen_version = _data_version(conn, 0) if watch else 0
        checked = probed = time.monotonic()
        try:
            while True:
                if self._lost and time.monotonic() - probed >= PROBE_EVERY:
                    self._probe(conn)
                    probed = time.monotonic()
                if watch and time.monotonic() - checked >= WATCH_EVERY:
                    # Other processes' commits (a CLI submit, another worker finishing a
                    # task) change data_version: wake our workers and waiters now
                    # instead of at their next poll.
                    version, checked = _data_version(conn, seen_version), time.monotonic()
                    if version != seen_version:
                        seen_version = version
                        loop.call_soon_threadsafe(self._external_change)
                try:
                    first = self._queue.get(timeout=WATCH_EVERY if watch else None)
                except queue.Empty:
                    continue
                if first is None:
                    break
                if first is _LOOK:
                    checked = 0.0
                    continue
                assert isinstance(first, _Job)
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if nxt is _LOOK:
                        checked = 0.0
                        continue
                    assert isinstance(nxt, _Job)
                    batch.append(nxt)
                if self._execute(conn, adapter, batch) and self._doorbell is not None:
                    self._doorbell.ring()
                loop.call_soon_threadsafe(_settle, [(j.fut, j.result, j.error) for j in batch])
                if stop:
                    break
        finally:
            conn.close()

    def _execute(self, conn: sqlite3.Connection, adapter: SyncConn, batch: list[_Job]) -> bool:
        """Run `batch`, and say whether it changed the database; a unit that found the
        file unusable fails with `StoreUnavailable`, and the database counts as lost
        until a write changes something again."""
        before = conn.total_changes
        self._execute_batch(conn, adapter, batch)
        lost = None
        for job in batch:
            why = _unusable(job.error)
            if why is not None:
                lost = why
                error = StoreUnavailable(f"the database {self.path} is unavailable: {why}", why)
                error.__cause__ = job.error
                job.error = error
        changed = conn.total_changes > before
        if lost is not None:
            self._mark(lost)
        elif self._lost and changed:
            self._mark(None)
        return changed

    def _probe(self, conn: sqlite3.Connection) -> None:
        """While lost: a write that changes nothing (the header's user version, set to
        itself), briefly, so a busy file does not hold up the thread."""
        try:
            conn.execute("PRAGMA busy_timeout = 100")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
        except sqlite3.Error as exc:
            if (why := _unusable(exc)) is not None:
                self._mark(why)
            return
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        self._mark(None)

    def _mark(self, lost: str | None) -> None:
        """Record (in the database thread) that the file is unusable (`lost`: why) or
        usable again, and tell the store's availability on the event loop."""
        loop = self._loop
        assert loop is not None
        if lost is not None:
            self._lost = True
            loop.call_soon_threadsafe(self.availability.lost, lost)
        elif self._lost:
            self._lost = False
            loop.call_soon_threadsafe(self.availability.restored)

    def _execute_batch(
        self, conn: sqlite3.Connection, adapter: SyncConn, batch: list[_Job]
    ) -> None:
        raw = [j for j in batch if j.write is None]
        for job in raw:
            try:
                job.result = run_sync(job.work, adapter)
            except BaseException as exc:
                job.error = exc
        jobs = [j for j in batch if j.write is not None]
        if not jobs:
            return
        # Writes that need no flush of their own (claims, ADR 75) commit without one when
        # nothing else in the transaction needs it: the next flushed commit syncs the WAL
        # with them in it. (The level cannot change inside a transaction.)
        relaxed = self._synchronous in ("FULL", "EXTRA") and any(j.write for j in jobs)
        relaxed = relaxed and not any(j.write and j.durable for j in jobs)
        if relaxed:
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._transaction(conn, adapter, jobs)
        finally:
            if relaxed:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _transaction(self, conn: sqlite3.Connection, adapter: SyncConn, jobs: list[_Job]) -> None:
        """Run `jobs` in one transaction, each in a savepoint of its own when not alone."""
        writes = any(j.write for j in jobs)
        try:
            conn.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
        except sqlite3.Error as exc:
            for job in jobs:
                job.error = exc
            return
        single = len(jobs) == 1  # alone in its transaction, a unit needs no savepoint
        for i, job in enumerate(jobs):
            if not single:
                conn.execute(f"SAVEPOINT j{i}")
            try:
                job.result = run_sync(job.work, adapter)
                if not single:
                    conn.execute(f"RELEASE j{i}")
            except BaseException as exc:
                job.error = exc
                if single or not conn.in_transaction:
                    # Alone, or SQLite rolled the whole transaction back itself (a full
                    # disk, an I/O error): every unit in it is lost, not only this one.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    for other in jobs:
                        if other.error is None:
                            other.error, other.result = exc, None
                    return
                conn.execute(f"ROLLBACK TO j{i}")
                conn.execute(f"RELEASE j{i}")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if _unusable(exc) is None:  # else the availability says it, once
                log.error("commit failed: %s", exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.error, job.result = exc, None


Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _outcome(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> Outcome:
    return (fut, result, error)


def _unusable(exc: BaseException | None) -> str | None:
    """Why `exc` says the file cannot be used now (`UNAVAILABLE_CODES`), or None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in UNAVAILABLE_CODES:
        return str(exc)
    return None


def _data_version(conn: sqlite3.Connection, last: int) -> int:
    """The file's change counter; `last` when it cannot be read now (a busy file must
    not stop the database thread: polling remains the fallback)."""
    try:
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
    except sqlite3.Error:
        return last
    return version


def _settle(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, error in items:
        if fut.done():
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)


__all__ = ["LATEST", "MIGRATIONS", "SQLiteStore", "parse_sqlite_url"]
