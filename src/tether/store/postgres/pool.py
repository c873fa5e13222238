"""The PostgreSQL store's connections, and what becomes of them in an outage (ADR 71).

`Connections` owns the `psycopg_pool` pool. An operation that fails because the server
cannot be reached (a refused or broken connection, no connection within `pool_timeout`)
raises `StoreUnavailable` and starts a *probe*, one at a time, which connects directly:

- Nothing connects: the database is *lost*. The pool is closed (its waiters fail at
  once instead of after `pool_timeout`, and it stops its own reconnection attempts),
  every operation fails at once with `StoreUnavailable`, and the probe connects again
  every `PROBE_EVERY` seconds. The first success opens a fresh pool and the database is
  *restored*: requests and workers carry on within `PROBE_EVERY` plus a connection's
  set-up.
- The server answers: the pool is kept when it is busy (every connection it may have
  exists) or an idle connection of it answers; else it is stuck in its reconnect
  backoff (psycopg_pool doubles the delay between attempts without a cap: 1, 2, 4 ...
  32 s, which is how a 35 s outage used to cost 20 s more) and a fresh pool replaces it.

An operation whose connection broke waits for the probe's first verdict before it
retries (`verdict`), so an outage costs it one quick `StoreUnavailable`, not attempts
at a pool whose server is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tether.errors import StoreUnavailable
from tether.store.availability import Availability

if TYPE_CHECKING:
    from tether.store.postgres import PgOptions

log = logging.getLogger("tether.store.postgres")

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

PROBE_EVERY = 0.25
"""Seconds between the probe's connection attempts while the database is lost."""
PROBE_CONNECT_TIMEOUT = 2
"""Seconds a probe's connection attempt may take (libpq's smallest `connect_timeout`)."""
POOLED_PROBE_TIMEOUT = 0.05
"""Seconds the probe waits for an idle pooled connection before connecting directly."""
REOPEN_TIMEOUT = 5.0
"""Seconds a fresh pool may take to open its `pool_min` connections."""


class Connections:
    """The pool of one store, replaced when an outage leaves it stuck or closed."""

    def __init__(
        self,
        options: PgOptions,
        availability: Availability,
        configure: Callable[[AsyncConnection[DictRow]], Awaitable[None]],
        on_restored: Callable[[], None],
    ) -> None:
        self._options = options
        self.availability = availability
        self._configure = configure
        self._on_restored = on_restored
        """Called when a lost database is back (the store looks for missed work)."""
        self._pool: Pool | None = None
        self._open = False
        self._probe: asyncio.Task[None] | None = None
        self._checked = asyncio.Event()
        """Set once the running probe has decided (at once when none runs)."""
        self._checked.set()
        self._retiring: set[asyncio.Task[None]] = set()

    # life cycle -----------------------------------------------------------------------
    def _new_pool(self) -> Pool:
        o = self._options
        return AsyncConnectionPool(
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
            # A connection that breaks while the server is up is replaced by the pool;
            # an outage is the probe's business (it replaces the whole pool).
            reconnect_timeout=3600.0,
            name="tether",
            configure=self._configure,
            open=False,
        )

    async def open(self, timeout: float = 30.0) -> None:
        pool = self._new_pool()
        await pool.open(wait=True, timeout=timeout)
        self._pool, self._open = pool, True

    async def close(self) -> None:
        self._open = False
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # handing out connections ----------------------------------------------------------
    def pool(self) -> Pool:
        """The pool to take a connection from; raises `StoreUnavailable` at once while
        the database is lost."""
        if not self._open:
            raise RuntimeError("the store is not open")
        if self._pool is None or not self.availability.reachable:
            raise self.availability.error()
        return self._pool

    def current(self, pool: Pool) -> bool:
        """`pool` is still the one in use (not replaced or closed by the probe)."""
        return pool is self._pool

    def failed(self, exc: psycopg.Error) -> StoreUnavailable:
        """The error to raise for `exc`, a failure that says the server cannot be
        reached (`connection_failure`); starts the probe."""
        self.suspect()
        if not self.availability.reachable:
            return self.availability.error()
        why = reason(exc, self._options.password)
        where = self._options.display
        return StoreUnavailable(f"the database {where} is unavailable: {why}", why)

    def suspect(self) -> None:
        """Start the probe unless it runs already."""
        if self._open and (self._probe is None or self._probe.done()):
            self._checked.clear()
            self._probe = asyncio.create_task(self._watch(), name="tether-pg-probe")

    async def verdict(self) -> None:
        """Wait until the running probe has decided whether the server answers (then
        `pool()` raises at once if it does not)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._checked.wait(), PROBE_CONNECT_TIMEOUT + 1)

    # the probe ------------------------------------------------------------------------
    async def _watch(self) -> None:
        try:
            await self._probe_until_back()
        finally:
            self._checked.set()

    async def _probe_until_back(self) -> None:
        while self._open:
            why = await self._check()
            if why is not None and self.availability.reachable:
                self.availability.lost(why)
                self._retire(self._pool)
                self._pool = None
            self._checked.set()
            if why is None:
                if not self.availability.reachable:
                    self.availability.restored()
                    self._on_restored()
                return
            await asyncio.sleep(PROBE_EVERY)

    async def _check(self) -> str | None:
        """None when the server answers (after replacing the pool if it needs it), else
        why not."""
        try:
            conn = await AsyncConnection.connect(
                self._options.conninfo, connect_timeout=PROBE_CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            return reason(exc, self._options.password)
        await conn.close()
        pool = self._pool
        if pool is not None and (_full(pool) or await _answers(pool)):
            return None  # the pool is only busy, or works
        fresh = self._new_pool()
        try:
            await fresh.open(wait=True, timeout=REOPEN_TIMEOUT)
        except psycopg.Error as exc:  # PoolTimeout among them: down again, it seems
            await fresh.close()
            return reason(exc, self._options.password)
        old, self._pool = self._pool, fresh
        self._retire(old)
        log.info("database %s: opened a fresh connection pool", self._options.display)
        return None

    def _retire(self, pool: Pool | None) -> None:
        """Close `pool` in the background: its waiters fail at once (and, being told the
        pool closed, try the current one), its connections close as they come back."""
        if pool is None:
            return
        task = asyncio.create_task(pool.close(timeout=1.0), name="tether-pg-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _answers(pool: Pool) -> bool:
    """An idle connection of `pool` answers a query."""
    try:
        async with pool.connection(timeout=POOLED_PROBE_TIMEOUT) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _full(pool: Pool) -> bool:
    """Every connection `pool` may have exists (so having none idle means busy)."""
    stats = pool.get_stats()
    return stats.get("pool_size", 0) >= stats.get("pool_max", pool.max_size) > 0


def connection_failure(exc: BaseException) -> bool:
    """`exc` says the server cannot be reached or the connection broke: no connection
    from the pool in time (`PoolTimeout`), a closed pool, a refused or lost connection
    (no SQLSTATE, class 08), or the server shutting down or starting (57P)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))


def rolled_back(exc: BaseException) -> bool:
    """The server aborted the transaction to resolve a conflict: class 40, deadlocks
    (40P01) and serialization failures (40001) among them (which psycopg does not make
    subclasses of `TransactionRollback`)."""
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.Error) and sqlstate is not None and sqlstate.startswith("40")


def retry_now(exc: psycopg.OperationalError) -> bool:
    """Worth an immediate retry: the connection broke, or a deadlock/serialization loss."""
    if isinstance(exc, PoolTimeout):
        return False  # the pool already waited `pool_timeout`
    return rolled_back(exc) or connection_failure(exc)


def reason(exc: psycopg.Error, password: str | None) -> str:
    """The useful line of a libpq error, without host or password."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # libpq says "connection failed: connection to server at ... failed: <reason>", and
    # may add a hint line ("Is the server running on that host ...?"): the reason wins.
    failed = [ln for ln in lines if "failed: " in ln]
    why = failed[-1] if failed else lines[-1] if lines else type(exc).__name__
    why = re.sub(r"^.*failed: ", "", why)
    why = why.removeprefix("FATAL:").strip()
    return (why.replace(password, "***") if password else why) or type(exc).__name__


__all__ = ["Connections", "connection_failure", "reason", "retry_now", "rolled_back"]
