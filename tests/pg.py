"""PostgreSQL for the test suite: one fresh database per test session, one fresh schema
per test.

The server is `TETHER_TEST_POSTGRES` (an admin URL, default
postgresql://postgres@127.0.0.1:5432/postgres). A session that runs a PostgreSQL test
creates the database `tether_test_<random>` and drops it at the end; each test gets an
empty schema of its own in it (selected with libpq's `options=-csearch_path=...`), which
costs a few milliseconds instead of a CREATE DATABASE per test.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("TETHER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
"""Under CI=true a PostgreSQL test never skips: what would skip it fails it instead."""


def where() -> str:
    """host:port of the test server, for messages."""
    parts = urlsplit(ADMIN_URL)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def probe(timeout: float = 2.0) -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=max(1, int(timeout))) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        # "connection failed: connection to server at ... failed: Connection refused"
        return re.sub(r"^.*failed: ", "", first) or type(exc).__name__
    return None


def url_for(dbname: str, schema: str | None = None) -> str:
    """A URL for `dbname` on the test server (optionally pinned to `schema`)."""
    parts = urlsplit(ADMIN_URL)
    query = f"options={quote(f'-csearch_path={schema}')}" if schema else ""
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", query, ""))


def create_database() -> str:
    """Create a fresh, empty database; returns its name."""
    name = f"tether_test_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_schema(dbname: str) -> str:
    """A fresh, empty schema in `dbname`; returns its name."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(url_for(dbname), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name


def drop_schema(dbname: str, schema: str) -> None:
    """Drop a test's schema; a connection the test leaked must not hang the suite."""
    with psycopg.connect(url_for(dbname), autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        # On a lock timeout the schema is left for the database drop at the session's end.
        with contextlib.suppress(psycopg.errors.LockNotAvailable):
            conn.execute(drop)


def wait_until_up(timeout: float = 60.0) -> None:
    """Block until the server accepts connections again (after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        reason = probe(timeout=1.0)
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL at {where()} still down after {timeout}s: {reason}")
        time.sleep(0.1)
