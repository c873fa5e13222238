"""What counts as the database being unavailable (ADR 71), and how the change is told:
one log line each way, waiters woken the moment it is back."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import psycopg
import pytest
from psycopg_pool import PoolClosed, PoolTimeout

from tether import StoreUnavailable
from tether.errors import is_transient
from tether.store.availability import Availability, failure_level
from tether.store.postgres.pool import connection_failure, reason, retry_now
from tether.store.sqlite import _unusable


async def test_one_line_per_change_and_waiters_wake_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.availability")
    a = Availability("db-here", log)
    assert a.reachable and await a.wait_reachable(0)
    caplog.set_level(logging.WARNING, "test.availability")
    a.lost("Connection refused")
    a.lost("still refused")  # the same outage: no second line, the latest reason kept
    assert not a.reachable and a.reason == "still refused"
    assert not await a.wait_reachable(0.01)
    waiter = asyncio.create_task(a.wait_reachable(5))
    await asyncio.sleep(0)
    a.restored()
    a.restored()
    assert await asyncio.wait_for(waiter, 1) and a.reachable
    assert [r.getMessage() for r in caplog.records] == [
        "database db-here unavailable: Connection refused",
        caplog.records[1].getMessage(),
    ]
    assert caplog.records[1].getMessage().startswith("database db-here available again after")
    error = Availability("db-here", log)
    error.lost("disk I/O error")
    exc = error.error()
    assert isinstance(exc, StoreUnavailable) and exc.reason == "disk I/O error"
    assert "db-here" in str(exc) and is_transient(exc)
    assert failure_level(exc) == logging.DEBUG and failure_level(ValueError()) == logging.WARNING


def test_which_postgresql_errors_mean_the_server_is_away() -> None:
    assert connection_failure(psycopg.OperationalError("connection refused"))  # no SQLSTATE
    assert connection_failure(PoolTimeout("no connection in 10 s"))
    assert connection_failure(PoolClosed("closed"))
    assert connection_failure(psycopg.errors.AdminShutdown())  # 57P01
    assert connection_failure(psycopg.errors.CannotConnectNow())  # 57P03: starting up
    assert not connection_failure(psycopg.errors.DeadlockDetected())  # 40P01: retry, not away
    assert not connection_failure(psycopg.errors.QueryCanceled())  # 57014: a statement timeout
    assert not connection_failure(psycopg.errors.UniqueViolation())
    assert retry_now(psycopg.errors.DeadlockDetected()) and not retry_now(PoolTimeout())
    assert retry_now(psycopg.errors.SerializationFailure())


def test_reasons_name_neither_host_nor_password() -> None:
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP "
        "connections?"
    )
    assert reason(refused, None) == "Connection refused"
    denied = psycopg.OperationalError(
        'connection to server at "db", port 5432 failed: FATAL:  password authentication '
        'failed for user "app" (password s3cret)'
    )
    assert "s3cret" not in reason(denied, "s3cret") and "db" not in reason(denied, "s3cret")


def test_which_sqlite_errors_mean_the_file_cannot_be_used() -> None:
    def error(code: int, text: str) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(text)
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    assert _unusable(error(778, "disk I/O error")) == "disk I/O error"  # IOERR_WRITE
    assert _unusable(error(8, "attempt to write a readonly database"))
    assert _unusable(error(13, "database or disk is full"))
    assert _unusable(error(14, "unable to open database file"))
    assert _unusable(error(5, "database is locked")) is None  # busy: not unusable
    assert _unusable(error(1, "no such table: x")) is None
    assert _unusable(None) is None and _unusable(ValueError("x")) is None
