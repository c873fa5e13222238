"""Every database URL form and option the docs give (README "Configuration",
docs/deployment.md "Selecting PostgreSQL") opens a working store and does what it says.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

import pg
from tether import Context, TaskStatus, Tether
from tether.errors import ConfigError, StoreUnavailable
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SQLiteStore


def _app(url: str) -> Tether:
    app = Tether(url)

    @app.workflow("echo")
    async def echo(ctx: Context, n: int) -> int:
        return await ctx.step("double", lambda: 2 * n)

    return app


async def _runs_a_task(app: Tether) -> None:
    # No webhook dispatcher nor scheduler: their transactions, beside the worker's, may
    # open connections past `pool_min` (up to `pool_max`), which is not what these tests
    # count.
    async with app.worker(poll_interval=0.05, webhooks=False, schedules=False):
        handle = await app.submit("echo", 21)
        assert await handle.result(timeout=10) == 42
    assert (await app.get(handle.id)).status == TaskStatus.SUCCEEDED


async def _sql(store: Any, text: str) -> Any:
    """One value read on a connection of the store itself (its session settings)."""

    async def work(conn: Any) -> Any:
        row = await conn.fetchone(text)
        return None if row is None else next(iter(dict(row).values()))

    return await store._run(work, write=False)


# SQLite ---------------------------------------------------------------------------------


async def test_sqlite_relative_absolute_and_memory_urls(tmp_path: Path) -> None:
    """`sqlite:///relative/path.db` is relative to the working directory (each test runs
    in its own), `sqlite:////absolute.db` absolute, `sqlite://:memory:` in memory."""
    (tmp_path / "data").mkdir()
    assert Path.cwd() == tmp_path
    for url, file in (
        ("sqlite:///data/relative.db", tmp_path / "data" / "relative.db"),
        (f"sqlite:///{tmp_path / 'absolute.db'}", tmp_path / "absolute.db"),
    ):
        assert url.startswith("sqlite:////") == os.path.isabs(url[len("sqlite:///") :])
        app = _app(url)
        try:
            await _runs_a_task(app)
        finally:
            await app.close()
        assert file.is_file() and file.stat().st_size > 0, url
    memory = _app("sqlite://:memory:")
    try:
        await _runs_a_task(memory)
    finally:
        await memory.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["absolute.db"]


@pytest.mark.parametrize(
    ("query", "pragma"),
    [("", 2), ("?synchronous=normal", 1), ("?synchronous=FULL", 2), ("?synchronous=extra", 3)],
)
async def test_sqlite_synchronous_option(tmp_path: Path, query: str, pragma: int) -> None:
    """`?synchronous=normal` (default `full`) is the connection's PRAGMA synchronous."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'sync.db'}{query}")
    await store.open(check_schema=False)
    try:
        assert await _sql(store, "PRAGMA synchronous") == pragma
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///x.db?synchronous=sometimes", "synchronous mode"),
        ("sqlite://", "no file path"),
    ],
)
def test_bad_sqlite_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SQLiteStore(url)


async def test_sqlite_url_in_a_missing_folder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="folder does not exist"):
        await SQLiteStore("sqlite:///no/such/folder/t.db").open()


# PostgreSQL -----------------------------------------------------------------------------


def _with(url: str, **params: str) -> str:
    """`url` with more query parameters."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _admin(dbname: str, text: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.url_for(dbname)) as conn:
        return conn.execute(text, args).fetchall()


async def _backends(dbname: str, application_name: str, want: int) -> int:
    """Server processes connected as `application_name`, once they number `want`."""
    count = -1
    for _ in range(200):
        rows = await asyncio.to_thread(
            _admin,
            dbname,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            application_name,
        )
        count = int(rows[0][0])
        if count == want:
            return count
        await asyncio.sleep(0.05)
    return count


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
async def test_postgres_schemes_and_search_path(pg_database: str, scheme: str) -> None:
    """Each accepted scheme runs a task; `options=-csearch_path=...` keeps Tether's
    tables in that schema."""
    schema = pg.create_schema(pg_database)
    try:
        url = pg.url_for(pg_database, schema).replace("postgresql", scheme, 1)
        assert f"options={quote(f'-csearch_path={schema}')}" in url
        app = _app(url)
        try:
            await _runs_a_task(app)
        finally:
            await app.close()
        tables = await asyncio.to_thread(
            _admin,
            pg_database,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'tasks'",
        )
        assert tables == [(schema,)]
    finally:
        pg.drop_schema(pg_database, schema)


async def test_postgres_pool_and_libpq_options(pg_url: str, pg_database: str) -> None:
    """libpq parameters pass through (`application_name`, `sslmode`); `pool_min` is the
    connections a process keeps, plus one for LISTEN; `listen=off` holds none.

    The counted pools have `pool_max == pool_min`: a worker's claim, step commit and a
    polled result may overlap and grow a wider pool past `pool_min` for the idle
    timeout, which is the pool's right, not what is counted here."""
    defaults = PostgresStore(pg_url).options
    assert (defaults.pool_min, defaults.pool_max, defaults.pool_timeout) == (2, 10, 10.0)
    assert (defaults.listen, defaults.prepare_threshold) == (True, 5)
    wide = PostgresStore(_with(pg_url, pool_min="3", pool_max="4")).options
    assert (wide.pool_min, wide.pool_max) == (3, 4)

    url = _with(pg_url, application_name="api-1", sslmode="disable", pool_min="3", pool_max="3")
    app = _app(url)
    try:
        await _runs_a_task(app)
        store = app.store
        assert isinstance(store, PostgresStore)
        await asyncio.wait_for(store.listening.wait(), 10)
        assert await _backends(pg_database, "api-1", 4) == 4  # 3 pooled + the listener
        assert await _sql(store, "SHOW application_name") == "api-1"
    finally:
        await app.close()

    quiet = _app(
        _with(pg_url, application_name="worker-1", pool_min="2", pool_max="2", listen="off")
    )
    try:
        await _runs_a_task(quiet)  # found by polling: nothing listens
        assert isinstance(quiet.store, PostgresStore) and not quiet.store.listening.is_set()
        assert await _backends(pg_database, "worker-1", 2) == 2
        listening = await asyncio.to_thread(
            _admin,
            pg_database,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker-1' "
            "AND datname = current_database() "
            "AND query ILIKE 'LISTEN%%'",
        )
        assert listening == [(0,)]
    finally:
        await quiet.close()


async def test_postgres_pool_timeout(pg_url: str) -> None:
    """`pool_timeout`: a unit of work that finds no free connection fails after that
    many seconds (`StoreUnavailable`, retryable), instead of waiting forever; a pool
    that is only busy is not an outage (ADR 71): it is kept, the database reachable."""
    store = PostgresStore(_with(pg_url, pool_min="1", pool_max="1", pool_timeout="0.3"))
    await store.open(check_schema=False)
    try:
        pool = store._conns.pool()
        loop = asyncio.get_running_loop()
        async with pool.connection():  # the only connection, held
            started = loop.time()
            with pytest.raises(StoreUnavailable):  # from psycopg_pool.PoolTimeout
                await store.get_task("missing", None)
            assert 0.25 <= loop.time() - started < 3
            await store._conns.verdict()  # the probe it started has decided
        assert store.availability.reachable and store._conns.pool() is pool
        assert await store.schema_version() == 0  # it answers again at once
    finally:
        await store.close()


@pytest.mark.parametrize(("threshold", "prepared"), [("none", False), ("1", True)])
async def test_postgres_prepare_threshold(pg_url: str, threshold: str, prepared: bool) -> None:
    """`prepare_threshold=none` (for PgBouncer before 1.21) never prepares a statement."""
    app = _app(_with(pg_url, pool_min="1", pool_max="1", listen="off", prepare_threshold=threshold))
    try:
        await app.open()
        for _ in range(10):
            assert await app.store.get_task("missing", None) is None
        count = await _sql(app.store, "SELECT count(*) AS n FROM pg_prepared_statements")
        assert (count > 0) is prepared
    finally:
        await app.close()
